"""The finance monitor's meters on ingestion (all or nothing per call), analysts' corrections (trends move,
the model's answer is kept, permissions, tenants) and retraining with them."""

import pytest
from django.utils import timezone

from core.billing.models import Plan, UsageEvent, plan_limits_write
from core.tenancy.models import Role
from finance_monitor.models import Document, FeedPoll, TrendBucket
from finance_monitor.services import documents as docs
from finance_monitor.services import feeds
from finance_monitor.services.trends import document_classified
from tests.finance_monitor.test_sources import FEED

BASE = "/api/finance-monitor"
NEG = {"positive": 0.1, "neutral": 0.2, "negative": 0.7}


def ingested(organisation) -> float:
    return float(
        sum(e.quantity for e in UsageEvent.objects.for_org(organisation).filter(meter="documents_ingested"))
    )


@pytest.mark.django_db
def test_ingestion_is_metered_per_accepted_document_and_refused_whole_over_quota(make_org, api, http_server):
    organisation, owner = make_org()
    plan_limits_write(Plan.objects.get(code="trial").pk, {"documents_ingested": 3})
    api.force_authenticate(owner)
    month = timezone.now().strftime("%Y-%m")
    four = {"documents": [{"text": f"Story number {i} about rates"} for i in range(4)]}
    refused = api.post(f"{BASE}/documents/batch", four, format="json")
    assert refused.status_code == 402, refused.json()
    error = refused.json()["error"]
    assert error["details"]["meter"] == "documents_ingested" and error["details"]["remaining"] == 3
    assert "documents ingested" in error["message"] and month in error["message"]
    assert Document.objects.for_org(organisation).count() == 0 and ingested(organisation) == 0
    # a copy (same text) is stored, so it counts as ingested; re-pushes of an id, same-url duplicates and
    # rejected items are not stored and not counted
    oil = {"text": "Oil falls", "url": "https://news.example.com/oil"}
    two = {"documents": [{"text": "Rates rise", "id": "r1"}, {"text": "rates RISE!"}, oil, {"text": ""}]}
    counts = api.post(f"{BASE}/documents/batch", two, format="json").json()["counts"]
    assert counts == {"created": 2, "existing": 0, "duplicate": 1, "rejected": 1, "copies": 1}
    assert ingested(organisation) == 3
    again = api.post(f"{BASE}/documents/", {"text": "Rates rise", "id": "r1"}, format="json")
    assert again.status_code == 200 and again.json()["duplicate_of"] is None
    same_url = api.post(f"{BASE}/documents/", {**oil, "text": "Oil falls again"}, format="json").json()
    assert same_url["status"] == "duplicate" and same_url["id"] is None and same_url["reason"] == "same url"
    assert ingested(organisation) == 3
    last = api.post(f"{BASE}/documents/", {"text": "Copper slides"}, format="json")
    assert last.status_code == 402
    assert (
        last.json()["error"]["message"]
        == f"Your plan's 3 documents ingested per month are used up for {month}."
    )
    # an upload and a feed over the quota keep none of their rows
    plan_limits_write(Plan.objects.get(code="trial").pk, {"documents_ingested": 4})
    upload = api.post(
        f"{BASE}/documents/upload",
        {"file": _file("text\nSilver rallies\nZinc drops\n", "docs.csv")},
        format="multipart",
    )
    assert upload.status_code == 402 and Document.objects.for_org(organisation).count() == 3
    http_server.routes["/feed"] = lambda request: (200, {"Content-Type": "application/rss+xml"}, FEED)
    source = feeds.feed_create(organisation=organisation, name="Wire", feed_url=f"{http_server.url}/feed")
    poll = feeds.feed_poll(source=source)
    assert poll.outcome == "error" and poll.error.startswith(
        "Not stored: This request adds 2 documents ingested"
    )
    assert Document.objects.for_org(organisation).count() == 3 and ingested(organisation) == 3
    source.refresh_from_db()
    assert source.etag == "" and source.consecutive_failures == 1  # the next poll fetches it again
    plan_limits_write(Plan.objects.get(code="trial").pk, {"documents_ingested": 5})
    assert feeds.feed_poll(source=source).created == 2 and ingested(organisation) == 5
    assert FeedPoll.objects.for_org(organisation).count() == 2
    meters = {m["meter"]: m for m in api.get("/api/usage/").json()["meters"]}
    assert meters["documents_ingested"]["used"] == 5 and meters["documents_ingested"]["limit"] == 5
    assert meters["documents_classified"]["used"] == 0


def _file(content: str, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, content.encode(), content_type="text/csv")


def _classified(organisation, text: str, topic: str = "Macro", probabilities=NEG) -> int:
    (document_id,) = docs.documents_ingest(
        organisation=organisation, items=[docs.DocumentIn(text=text)]
    ).created
    document_classified(
        organisation=organisation, document_id=document_id, topic=topic, probabilities=probabilities
    )
    return document_id


def _bucket(organisation, dimension: str, key: str) -> tuple[int, int, int]:
    b = (
        TrendBucket.objects.for_org(organisation)
        .filter(dimension=dimension, key=key, granularity="day")
        .first()
    )
    return (b.volume, b.negative, b.positive) if b else (0, 0, 0)


@pytest.mark.django_db
def test_a_correction_moves_the_trends_and_keeps_the_models_answer(make_org, make_member, user_client):
    organisation, _ = make_org()
    operator = make_member(organisation, Role.OPERATOR)
    client = user_client(operator)
    document_id = _classified(organisation, "Fed hikes rates again")
    assert _bucket(organisation, "topic", "Macro") == (1, 1, 0)
    answer = client.post(
        f"{BASE}/documents/{document_id}/correct",
        {"topic": "Fed | Central Banks", "sentiment": "positive"},
        format="json",
    )
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert body["topic"] == body["corrected_topic"] == "Fed | Central Banks"
    assert body["sentiment"] == body["corrected_sentiment"] == "positive" and body["score"] == 1.0
    assert body["model_answer"]["topic"] == "Macro" and body["model_answer"]["sentiment"] == "negative"
    assert body["model_answer"]["probabilities"] == NEG and body["corrected_at"]
    assert _bucket(organisation, "topic", "Macro") == (0, 0, 0)
    assert _bucket(organisation, "topic", "Fed | Central Banks") == (1, 0, 1)
    assert _bucket(organisation, "all", "") == (1, 0, 1)
    # a second correction (sentiment only) keeps the first model answer and the corrected topic
    again = client.post(
        f"{BASE}/documents/{document_id}/correct", {"sentiment": "neutral"}, format="json"
    ).json()
    assert (
        again["topic"] == "Fed | Central Banks" and again["sentiment"] == "neutral" and again["score"] == 0.0
    )
    assert again["model_answer"]["topic"] == "Macro"
    assert _bucket(organisation, "all", "") == (1, 0, 0)
    listed = client.get(f"{BASE}/documents/", {"topic": "Fed | Central Banks", "sentiment": "neutral"}).json()
    assert [d["id"] for d in listed["results"]] == [document_id]


@pytest.mark.django_db
def test_corrections_are_checked_permitted_and_tenant_scoped(
    make_org, make_member, user_client, make_key, key_client
):
    organisation, owner = make_org()
    other, stranger = make_org()
    document_id = _classified(organisation, "Oil slumps")
    (pending_id,) = docs.documents_ingest(
        organisation=organisation, items=[docs.DocumentIn(text="Gold up")]
    ).created
    url = f"{BASE}/documents/{document_id}/correct"
    viewer = user_client(make_member(organisation, Role.VIEWER))
    assert viewer.post(url, {"sentiment": "positive"}, format="json").status_code == 403
    assert user_client(stranger).post(url, {"sentiment": "positive"}, format="json").status_code == 404
    owner_client = user_client(owner)
    assert owner_client.post(url, {}, format="json").status_code == 400
    assert owner_client.post(url, {"sentiment": "bullish"}, format="json").status_code == 400
    assert owner_client.post(url, {"topic": "x" * 101}, format="json").status_code == 400
    pending = owner_client.post(
        f"{BASE}/documents/{pending_id}/correct", {"sentiment": "positive"}, format="json"
    )
    assert pending.status_code == 400 and "not classified yet" in pending.json()["error"]["message"]
    both = owner_client.post(
        f"{BASE}/documents/{pending_id}/correct", {"sentiment": "positive", "topic": "Gold"}, format="json"
    ).json()
    assert both["classified_at"] and both["model_answer"] is None  # no model answered it
    _, read_only = make_key(organisation, scopes=("read",))
    assert key_client(read_only).post(url, {"sentiment": "positive"}, format="json").status_code == 403
    _, trainer = make_key(organisation, scopes=("train",))
    assert key_client(trainer).post(url, {"sentiment": "positive"}, format="json").status_code == 200
    assert Document.objects.for_org(organisation).get(pk=document_id).corrected_sentiment == "positive"
    # the other tenant sees none of it
    status = user_client(stranger).get(f"{BASE}/classification/").json()
    assert status["pending"] == 0 and status["corrected"] == 0 and status["topic"] is None
    assert user_client(owner).get(f"{BASE}/classification/").json()["corrected"] == 2
    assert not TrendBucket.objects.for_org(other).exists()
    # retraining needs corrections and an active model trained on a dataset
    retrain = user_client(stranger).post(f"{BASE}/models/retrain", {}, format="json")
    assert retrain.status_code == 409 and "No analyst corrections" in retrain.json()["error"]["message"]
    retrain = owner_client.post(f"{BASE}/models/retrain", {"task": "sentiment"}, format="json")
    assert retrain.status_code == 409 and "no active sentiment model" in retrain.json()["error"]["message"]
    assert owner_client.post(f"{BASE}/models/retrain", {"task": "intent"}, format="json").status_code == 400
