"""Catalogue and behaviour ingestion: upserts, per-row rejections, uploads, idempotency, weights."""

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from recommender.models import Event, Item

pytestmark = pytest.mark.django_db


def _items(n: int, start: int = 0) -> list[dict]:
    return [
        {"id": f"sku-{i}", "title": f"Item {i}", "categories": ["mugs"], "price": "4.50"}
        for i in range(start, start + n)
    ]


def _client(make_org, user_client):
    org, owner = make_org()
    return org, user_client(owner)


def test_items_batch_creates_updates_and_rejects_bad_rows(make_org, user_client):
    org, client = _client(make_org, user_client)
    body = {"items": [*_items(3), {"id": "", "title": "no id"}, {"id": "x", "title": "T", "price": "cheap"}]}
    answer = client.post("/api/recommender/items/batch", body, format="json")
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert (data["created"], data["updated"]) == (3, 0)
    assert [(r["index"], r["reason"]) for r in data["rejected"]] == [
        (3, "id is missing"),
        (4, "price 'cheap' is not a number"),
    ]
    again = client.post(
        "/api/recommender/items/batch",
        {"items": [{"id": "sku-1", "title": "Renamed", "available": False}]},
        format="json",
    ).json()
    assert (again["created"], again["updated"]) == (0, 1)
    item = Item.objects.for_org(org).get(external_id="sku-1")
    assert (item.title, item.available) == ("Renamed", False)
    detail = client.get("/api/recommender/items/sku-1/").json()
    assert detail["title"] == "Renamed" and detail["available"] is False


def test_a_batch_over_the_limit_is_refused_whole(make_org, user_client):
    org, client = _client(make_org, user_client)
    answer = client.post("/api/recommender/items/batch", {"items": _items(1001)}, format="json")
    assert answer.status_code == 400 and "1000" in str(answer.json())
    assert not Item.objects.for_org(org).exists()


def test_items_upload_csv_reports_rejected_lines(make_org, user_client):
    org, client = _client(make_org, user_client)
    data = (
        b"id,title,categories,price,attributes\n"
        b"a,Mug,kitchen|mugs,3.5,\n"
        b"b,,kitchen,1,\n"
        b'c,Plate,kitchen,2,"{""colour"": ""red""}"\n'
        b"d,Bowl,kitchen,2,not json\n"
    )
    answer = client.post(
        "/api/recommender/items/upload", {"file": SimpleUploadedFile("items.csv", data)}, format="multipart"
    )
    assert answer.status_code == 200, answer.content
    data_out = answer.json()
    assert data_out["created"] == 2
    assert [(r["index"], r["reason"]) for r in data_out["rejected"]] == [
        (3, "title is missing"),
        (5, "attributes must be a JSON object"),
    ]
    assert Item.objects.for_org(org).get(external_id="a").categories == ["kitchen", "mugs"]
    assert Item.objects.for_org(org).get(external_id="c").attributes == {"colour": "red"}
    bad = client.post(
        "/api/recommender/items/upload",
        {"file": SimpleUploadedFile("items.csv", "id,title\na,b\n".encode("utf-16"))},
        format="multipart",
    )
    assert bad.status_code == 400 and "cannot be read" in bad.json()["error"]["message"]


def _event(n: int, *, item: str = "sku-0", user: str = "u1", when=None, type_: str = "purchase") -> dict:
    when = when or timezone.now() - timedelta(hours=1)
    return {"id": f"e{n}", "user": user, "item": item, "type": type_, "occurred_at": when.isoformat()}


def test_events_are_idempotent_and_bad_rows_are_rejected_with_a_reason(make_org, user_client):
    org, client = _client(make_org, user_client)
    client.post("/api/recommender/items/batch", {"items": _items(2)}, format="json")
    future = timezone.now() + timedelta(days=1)
    batch = [
        _event(1),
        _event(2, item="sku-1"),
        _event(3, item="nope"),
        _event(4, when=future),
        {**_event(5), "occurred_at": "yesterday"},
        {**_event(6), "occurred_at": "2026-01-01T10:00:00"},
        _event(7, type_="like"),
        {**_event(8), "type": "rating"},
        _event(1),  # the same id again in the batch
    ]
    answer = client.post("/api/recommender/events/batch", {"events": batch}, format="json")
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert (data["created"], data["existing"]) == (2, 1)
    reasons = {r["index"]: r["reason"] for r in data["rejected"]}
    assert reasons[2].startswith("unknown item 'nope'")
    assert "in the future" in reasons[3]
    assert "not an ISO 8601" in reasons[4] and "time zone" in reasons[5]
    assert "not one of" in reasons[6] and "rating needs a value" in reasons[7]
    again = client.post(
        "/api/recommender/events/batch", {"events": [_event(1), _event(2)]}, format="json"
    ).json()
    assert (again["created"], again["existing"]) == (0, 2)
    assert Event.objects.for_org(org).count() == 2


def test_events_upload_jsonl(make_org, user_client):
    org, client = _client(make_org, user_client)
    client.post("/api/recommender/items/batch", {"items": _items(1)}, format="json")
    import json

    lines = [json.dumps(_event(1)), "{broken", json.dumps(_event(2, item="missing"))]
    answer = client.post(
        "/api/recommender/events/upload",
        {"file": SimpleUploadedFile("events.jsonl", "\n".join(lines).encode())},
        format="multipart",
    ).json()
    assert answer["created"] == 1
    assert [r["index"] for r in answer["rejected"]] == [2, 3]
    assert answer["rejected"][0]["reason"].startswith("malformed")


def test_event_weights_are_per_organisation(make_org, user_client):
    org, client = _client(make_org, user_client)
    other, other_client = _client(make_org, user_client)
    answer = client.put("/api/recommender/settings/weights", {"weights": {"view": 0.5}}, format="json")
    assert answer.status_code == 200 and answer.json()["weights"]["view"] == 0.5
    assert other_client.get("/api/recommender/settings/weights").json()["weights"]["view"] == 1.0
    bad = client.put("/api/recommender/settings/weights", {"weights": {"glance": 1}}, format="json")
    assert bad.status_code == 400 and "glance" in bad.json()["error"]["message"]
