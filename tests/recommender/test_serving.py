"""Serving: top-k with filters, exclusions and explanations; the user's history read at request time;
sessions and similar items; k and input checks; metering and the quota; tenant isolation."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from core.billing import deferred, flusher
from core.billing.models import Plan, PlanLimit, UsageEvent
from core.registry.models import ModelVersion
from recommender.models import Item
from recommender.services import catalogue, events, serving
from tests.recommender.conftest import ITEMS, shop_events, train_now

pytestmark = pytest.mark.django_db


def _get(client, path: str, **params):
    return client.get(path, params)


def _ids(answer) -> list[str]:
    return [item["id"] for item in answer["items"]]


def test_recommendations_carry_the_version_and_why(shop, user_client):
    org, owner = shop
    job = train_now(org)
    client = user_client(owner)
    version = ModelVersion.objects.for_org(org).get(app="recommender")
    assert job.result["promoted"] and version.kind == "recommender" and version.method == "itemknn"
    assert {"ndcg@10", "recall@10", "hr@10"} <= set(version.metrics)
    # a new user who bought A: B first, because of A
    client.post(
        "/api/recommender/events/batch",
        {
            "events": [
                {
                    "id": "n1",
                    "user": "new",
                    "item": "A",
                    "type": "purchase",
                    "occurred_at": timezone.now().isoformat(),
                }
            ]
        },
        format="json",
    )
    answer = _get(client, "/api/recommender/recommendations", user="new", k=3).json()
    assert answer["model_version"] == version.pk and answer["version"] == 1
    assert answer["items"][0]["id"] == "B" and answer["items"][0]["why"] == ["A"]
    assert "A" not in _ids(answer)  # already purchased


def test_a_new_event_changes_the_next_answer_without_retraining(shop, user_client):
    org, owner = shop
    train_now(org)
    client = user_client(owner)
    first = _get(client, "/api/recommender/recommendations", user="fresh", k=1).json()
    assert first["history_items"] == 0 and first["items"][0]["why"] == []  # popular items for a stranger
    client.post(
        "/api/recommender/events/batch",
        {
            "events": [
                {
                    "id": "f1",
                    "user": "fresh",
                    "item": "C",
                    "type": "view",
                    "occurred_at": timezone.now().isoformat(),
                }
            ]
        },
        format="json",
    )
    second = _get(client, "/api/recommender/recommendations", user="fresh", k=1).json()
    assert second["items"][0]["id"] == "D" and second["items"][0]["why"] == ["C"]
    assert ModelVersion.objects.for_org(org).count() == 1


def test_filters_and_exclusions(shop, user_client):
    org, owner = shop
    train_now(org)
    client = user_client(owner)
    path = "/api/recommender/recommendations"
    everything = _ids(_get(client, path, user="u0", k=10).json())
    assert "A" not in everything and "B" not in everything and "E" not in everything  # purchased
    assert set(everything) == {"C", "D", "F"}
    with_bought = _ids(_get(client, path, user="u0", k=10, exclude_purchased="false").json())
    assert {"A", "B", "E"} <= set(with_bought)
    assert _ids(_get(client, path, user="u0", k=10, category="plates").json()) == ["C", "D"] or set(
        _ids(_get(client, path, user="u0", k=10, category="plates").json())
    ) == {"C", "D"}
    assert set(_ids(_get(client, path, user="u0", k=10, max_price="13").json())) == {"C"}
    assert set(_ids(_get(client, path, user="u0", k=10, min_price="20").json())) == {"F"}
    assert set(_ids(_get(client, path, user="u0", k=10, exclude="C,F").json())) == {"D"}
    catalogue.items_upsert(
        organisation=org,
        rows=[
            {**ITEMS[2], "available": False},
            {**ITEMS[3], "expires_at": (timezone.now() - timedelta(minutes=1)).isoformat()},
            {**ITEMS[5], "deleted": True},
        ],
    )
    assert _ids(_get(client, path, user="u0", k=10).json()) == []
    assert set(_ids(_get(client, path, user="u0", k=10, available_only="false").json())) == {"C"}


def test_sessions_similar_items_and_bad_requests(shop, user_client):
    org, owner = shop
    train_now(org, method="ease")
    client = user_client(owner)
    session = _get(client, "/api/recommender/recommendations", items="C", k=2).json()
    assert (
        session["user"] is None and session["items"][0]["id"] == "D" and session["items"][0]["why"] == ["C"]
    )
    similar = _get(client, "/api/recommender/items/A/similar", k=1).json()
    assert similar["item"] == "A" and _ids(similar) == ["B"] and similar["method"] == "ease"
    assert _get(client, "/api/recommender/items/nope/similar").status_code == 404
    for params in (
        {"user": "u0", "k": 0},
        {"user": "u0", "k": 101},
        {"user": "u0", "k": "ten"},
        {},
        {"user": "u0", "items": "A"},
        {"user": "u0", "min_price": "x"},
    ):
        answer = _get(client, "/api/recommender/recommendations", **params)
        assert answer.status_code == 400, params
        assert answer.json()["error"]["message"]


def test_live_popularity_serves_before_any_model(shop, user_client):
    org, owner = shop
    answer = _get(user_client(owner), "/api/recommender/recommendations", user="stranger", k=2).json()
    assert answer["model_version"] is None and answer["method"] == "live_popularity"
    assert _ids(answer)[0] == "E"


@pytest.mark.django_db(
    transaction=True
)  # with Redis, the flusher thread writes the lines: it sees committed rows
def test_requests_are_metered_and_refused_over_quota(shop, make_key, key_client):
    org, _ = shop
    train_now(org)
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id="recommendations_served", defaults={"limit": 2})
    _, secret = make_key(org, scopes=("predict",))
    client = key_client(secret)
    for _ in range(2):
        assert _get(client, "/api/recommender/recommendations", user="u0", k=5).status_code == 200
    refused = _get(client, "/api/recommender/recommendations", user="u0", k=5)
    assert refused.status_code == 402
    assert refused.json()["error"]["details"]["meter"] == "recommendations_served"
    assert _get(client, "/api/recommender/items/A/similar").status_code == 402
    if deferred.enabled():  # the served lines went through the ledger stream (core.billing.streamed)
        flusher.ledger_drain()
    served = UsageEvent.objects.for_org(org).filter(meter="recommendations_served")
    assert sum(e.quantity for e in served) == 2


def test_catalogue_quota_refuses_new_items_but_updates_pass(shop, user_client):
    org, owner = shop
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id="catalogue_items", defaults={"limit": 6})
    client = user_client(owner)
    refused = client.post(
        "/api/recommender/items/batch", {"items": [{"id": "G", "title": "Cup"}]}, format="json"
    )
    assert refused.status_code == 402
    ok = client.post("/api/recommender/items/batch", {"items": [{"id": "A", "title": "Cup"}]}, format="json")
    assert ok.status_code == 200 and ok.json()["updated"] == 1
    data = b"id,title\nA,Mug again\nH,Jug\n"  # one update, one new item: the whole file is refused first
    upload = client.post(
        "/api/recommender/items/upload", {"file": SimpleUploadedFile("items.csv", data)}, format="multipart"
    )
    assert upload.status_code == 402 and Item.objects.for_org(org).get(external_id="A").title == "Cup"


def test_tenants_see_only_their_own(shop, make_org, make_key, key_client, user_client):
    org, owner = shop
    train_now(org)
    other, other_owner = make_org()
    _, secret = make_key(other, scopes=("read", "predict", "train", "admin"))
    client = key_client(secret)
    assert client.get("/api/recommender/items/").json()["count"] == 0
    assert client.get("/api/recommender/items/A/").status_code == 404
    assert client.get("/api/recommender/items/A/similar").status_code == 404
    events = client.post(
        "/api/recommender/events/batch", {"events": shop_events("x")[:1]}, format="json"
    ).json()
    assert events["created"] == 0 and events["rejected"][0]["reason"].startswith("unknown item")
    answer = client.get("/api/recommender/recommendations", {"user": "u0"}).json()
    assert answer["history_items"] == 0 and answer["model_version"] is None and answer["items"] == []
    assert client.get("/api/recommender/recommendations", {"items": "A,C"}).json()["items"] == []
    assert client.get("/api/recommender/settings/weights").status_code == 200
    assert Item.objects.for_org(other).count() == 0
    # the other tenant's items with the same ids are its own
    client.post("/api/recommender/items/batch", {"items": [{"id": "A", "title": "Other A"}]}, format="json")
    assert Item.objects.for_org(org).get(external_id="A").title == "Red mug"


def test_another_kind_under_the_recommenders_task_is_not_used_to_rank(shop, user_client):
    org, owner = shop
    train_now(org)
    # core's /api/models/train could put a classifier there; it must not be asked to rank
    ModelVersion.all_tenants.filter(organisation=org, app="recommender").update(kind="classifier")
    answer = _get(user_client(owner), "/api/recommender/recommendations", user="u0", k=2)
    assert answer.status_code == 200 and answer.json()["model_version"] is None


KINDS = {"items", "next", "text", "new", "tower", "rising", "trend", "popular", "boost", "catalogue"}


@pytest.mark.parametrize("method", [None, "popularity", "itemknn", "ease", "hybrid"])
def test_every_served_item_says_why_it_is_there(shop, method):
    """Each model the product serves (live popularity before the first model, then each method): no item comes
    without a reason, a reason that names history items names what ``why`` lists, and an item the history
    explains still lists those items."""
    org, _ = shop
    if method is not None:
        train_now(org, method=method)
    filters = serving.Filters()
    answers = [
        serving.recommendations_for_user(organisation=org, user="u0", k=10, filters=filters),
        serving.recommendations_for_user(organisation=org, user="stranger", k=10, filters=filters),
        serving.recommendations_for_session(organisation=org, items=["C"], k=10, filters=filters),
        serving.items_similar(organisation=org, external_id="A", k=10, filters=filters),
    ]
    assert all(answer["items"] for answer in answers)
    kinds = set()
    for answer in answers:
        for item in answer["items"]:
            reason = item["reason"]
            assert reason["kind"] in KINDS and reason["detail"], item
            kinds.add(reason["kind"])
            if reason["items"]:
                assert reason["items"] == item["why"] and reason["kind"] in {"items", "next", "text", "new"}
            if reason["kind"] in {"items", "next"}:
                assert item["why"], item  # a reason from the history always names its items
    stranger = answers[1]["items"]
    assert all(not i["why"] and i["reason"]["items"] == [] for i in stranger)  # no history, nothing named
    if method in (None, "popularity", "itemknn", "ease"):
        assert {i["reason"]["kind"] for i in stranger} == {"popular"}
    if method is None:
        assert stranger[0]["reason"]["detail"] == "popular in the last 30 days (ranked by events)"
    if method in ("itemknn", "ease", "hybrid"):
        similar = answers[3]["items"][0]  # B, bought with A by everyone who bought A
        assert similar["id"] == "B" and similar["why"] == ["A"]
        assert similar["reason"] == {"kind": "items", "detail": "often taken with Red mug", "items": ["A"]}


@pytest.mark.parametrize("prepare", [False, True])
def test_a_users_history_is_one_statement_read_as_the_orm_reads_it(shop, make_org, settings, prepare):
    """The history statement is compiled once per database and run with each request's organisation and
    user: the same rows, most recent first, as the ORM's query, and nothing of another tenant's same-named
    user; prepared on the server once per connection where that is on (``core.prepared``)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.DB_PREPARED_STATEMENTS = prepare

    from recommender import selectors

    org, _ = shop
    other, _ = make_org()
    catalogue.items_upsert(organisation=other, rows=ITEMS)
    late = (timezone.now() - timedelta(minutes=5)).isoformat()
    mine = [{"id": "r1", "user": "u3", "item": "F", "type": "rating", "value": 4, "occurred_at": late}]
    assert not events.events_ingest(organisation=org, rows=mine).rejected
    theirs = [{"id": "x1", "user": "u3", "item": "C", "type": "view", "occurred_at": late}]
    assert not events.events_ingest(organisation=other, rows=theirs).rejected
    for organisation, user in [(org, "u3"), (other, "u3"), (org, "u15"), (org, "nobody")]:
        expected = list(selectors._history_query(organisation=organisation, user=user))
        with CaptureQueriesContext(connection) as statements:
            rows = selectors._history_rows(organisation=organisation, user=user)
        assert [tuple(row) for row in rows] == expected and len(statements) == 1
    assert [row[0] for row in selectors._history_rows(organisation=org, user="u3")] == ["F", "E", "B", "A"]
    assert selectors._history_rows(organisation=other, user="u3") == [("C", "view", None)]
    history, purchased = selectors.user_history(organisation=org, user="u3")
    assert list(history) == ["F", "E", "B", "A"] and purchased == {"A", "B", "E"}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%recommender_event%"]
            )
            assert cursor.fetchone()[0] == (1 if prepare else 0)  # one, whatever the parameters
