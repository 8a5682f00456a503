"""Values a client controls that once reached the database and broke an organisation: times PostgreSQL
cannot hand back, NUL characters, non-ASCII digits, and ids the API cannot address. Each is refused with a
reason naming the field (a per-row rejection, or a 400/404), and the organisation keeps working."""

import threading
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DataError, connection
from django.utils import timezone

from core.billing.models import Plan, PlanLimit
from core.errors import QuotaExceeded
from recommender.models import Event, Item
from recommender.services import catalogue

pytestmark = pytest.mark.django_db

YEAR_ONE = "0001-01-01T00:00:00+14:00"  # stored by PostgreSQL as 0001-12-31 10:00 BC


def _client(make_org, user_client):
    org, owner = make_org()
    client = user_client(owner)
    answer = client.post(
        "/api/recommender/items/batch", {"items": [{"id": "i1", "title": "Mug"}]}, format="json"
    )
    assert answer.json()["created"] == 1
    return org, client


def _event(n: int, **fields) -> dict:
    when = (timezone.now() - timedelta(hours=1)).isoformat()
    return {"id": f"e{n}", "user": "u1", "item": "i1", "type": "view", "occurred_at": when, **fields}


def _reasons(answer) -> dict[int, str]:
    assert answer.status_code == 200, answer.content
    return {r["index"]: r["reason"] for r in answer.json()["rejected"]}


def _still_readable(client) -> None:
    """What one unreadable timestamp used to break: the item list and detail, and recommendations."""
    assert client.get("/api/recommender/items/").status_code == 200
    assert client.get("/api/recommender/items/i1/").status_code == 200
    assert client.get("/api/recommender/recommendations?user=u1").status_code == 200


def test_times_outside_1900_to_9998_are_rejected_per_row(make_org, user_client):
    org, client = _client(make_org, user_client)
    items = client.post(
        "/api/recommender/items/batch",
        {
            "items": [
                {"id": "old", "title": "Old", "expires_at": YEAR_ONE},
                {"id": "late", "title": "Late", "expires_at": "9999-12-31T23:00:00-05:00"},
                {"id": "feb", "title": "Feb", "expires_at": "2026-02-30T00:00:00Z"},
                {"id": "ok", "title": "Fine", "expires_at": "9998-12-31T00:00:00Z"},
            ]
        },
        format="json",
    )
    reasons = _reasons(items)
    assert sorted(reasons) == [0, 1, 2]
    assert reasons[0].startswith("expires_at") and "out of range" in reasons[0]
    assert reasons[1].startswith("expires_at") and "out of range" in reasons[1]
    assert "not an ISO 8601" in reasons[2]
    assert items.json()["created"] == 1
    events = client.post(
        "/api/recommender/events/batch",
        {
            "events": [
                _event(1, occurred_at=YEAR_ONE),
                _event(2, occurred_at="1899-12-31T23:59:59Z"),
                _event(3),
            ]
        },
        format="json",
    )
    reasons = _reasons(events)
    assert sorted(reasons) == [0, 1]
    assert all(r.startswith("occurred_at") and "out of range" in r for r in reasons.values())
    upload = client.post(
        "/api/recommender/events/upload",
        {
            "file": SimpleUploadedFile(
                "events.csv", f"id,user,item,type,occurred_at\nev-old,u2,i1,view,{YEAR_ONE}\n".encode()
            )
        },
        format="multipart",
    )
    assert "out of range" in _reasons(upload)[2]
    assert set(Item.objects.for_org(org).values_list("external_id", flat=True)) == {"i1", "ok"}
    assert list(Event.objects.for_org(org).values_list("external_id", flat=True)) == ["e3"]
    _still_readable(client)


def test_an_organisation_poisoned_before_the_check_is_repaired_by_the_command(make_org, user_client):
    from django.core.management import call_command
    from django.utils.dateparse import parse_datetime

    org, client = _client(make_org, user_client)
    item = Item.objects.for_org(org).get(external_id="i1")
    year_one = parse_datetime(YEAR_ONE)
    Item.all_tenants.create(organisation=org, external_id="old", title="Old", expires_at=year_one)
    Item.all_tenants.create(
        organisation=org,
        external_id="far",
        title="Far",
        expires_at=parse_datetime("9999-12-31T23:00:00-05:00"),
    )
    Event.all_tenants.create(
        organisation=org, external_id="bad", user="u1", item=item, type="view", occurred_at=year_one
    )
    Event.all_tenants.create(
        organisation=org, external_id="good", user="u1", item=item, type="view", occurred_at=timezone.now()
    )
    with pytest.raises(DataError, match="year"):  # what every read of the organisation met
        list(Event.objects.for_org(org))
    call_command("recommender_repair_times")
    assert list(Event.objects.for_org(org).values_list("external_id", flat=True)) == ["good"]
    expiry = dict(Item.objects.for_org(org).values_list("external_id", "expires_at"))
    assert expiry["old"].year == 1900 and expiry["far"] is None and expiry["i1"] is None
    _still_readable(client)
    served = client.get("/api/recommender/items/").json()
    assert {i["id"] for i in served["results"]} == {"i1", "old", "far"}


def test_nul_characters_are_rejected_naming_the_field(make_org, user_client):
    org, client = _client(make_org, user_client)
    items = client.post(
        "/api/recommender/items/batch",
        {
            "items": [
                {"id": "a\u0000", "title": "T"},
                {"id": "b", "title": "T\u0000"},
                {"id": "c", "title": "T", "categories": ["mu\u0000gs"]},
                {"id": "d", "title": "T", "attributes": {"k\u0000": 1}},
                {"id": "e", "title": "T", "attributes": {"k": [{"deep": "v\u0000"}]}},
                {"id": "f", "title": "T", "description": "\u0000"},
            ]
        },
        format="json",
    )
    reasons = _reasons(items)
    assert [reasons[i].split()[0] for i in range(6)] == [
        "id",
        "title",
        "categories",
        "attributes",
        "attributes",
        "description",
    ]
    assert all("NUL" in reason for reason in reasons.values())
    events = client.post(
        "/api/recommender/events/batch",
        {"events": [_event(1, user="u\u0000"), _event(2, id="e\u00002"), _event(3, type="vi\u0000ew")]},
        format="json",
    )
    reasons = _reasons(events)
    assert [reasons[i].split()[0] for i in range(3)] == ["user", "id", "type"]
    csv_items = b"id,title\ng,Good\nh,Bad\x00title\n"
    upload = client.post(
        "/api/recommender/items/upload",
        {"file": SimpleUploadedFile("items.csv", csv_items)},
        format="multipart",
    )
    assert _reasons(upload)[3].startswith("title contains a NUL")
    jsonl = (
        '{"id": "ev-j", "user": "u\\u0000", "item": "i1", "type": "view", '
        '"occurred_at": "2024-01-01T00:00:00Z"}'
    )
    upload = client.post(
        "/api/recommender/events/upload",
        {"file": SimpleUploadedFile("events.jsonl", jsonl.encode())},
        format="multipart",
    )
    assert _reasons(upload)[1].startswith("user contains a NUL")
    assert set(Item.objects.for_org(org).values_list("external_id", flat=True)) == {"i1", "g"}
    assert not Event.objects.for_org(org).exists()
    assert client.get("/api/recommender/items/%00/").status_code == 404
    assert client.get("/api/recommender/items/%00/similar").status_code == 404
    page = client.get("/recommender/?user=%00")
    assert page.status_code == 400 and b"NUL" in page.content
    _still_readable(client)


@pytest.mark.parametrize("name", ["k", "max_per_category"])
def test_non_ascii_digits_in_whole_number_parameters_are_a_400(make_org, user_client, name):
    org, client = _client(make_org, user_client)
    for value in ("%C2%B2", "--1", "%D9%A3"):  # superscript two, a double sign, Arabic-Indic three
        for path in ("/api/recommender/recommendations?user=u1&", "/api/recommender/items/i1/similar?"):
            answer = client.get(f"{path}{name}={value}")
            assert answer.status_code == 400, (path, value, answer.content)
            assert answer.json()["error"]["details"]["field"] == name
            assert "whole number" in answer.json()["error"]["message"]
    assert client.get(f"/api/recommender/recommendations?user=u1&{name}=3").status_code == 200


def test_ids_the_api_cannot_address_are_rejected_and_the_shipped_ids_pass(make_org, user_client):
    from recommender.demo import retail_catalogue_and_events
    from recommender.services.catalogue import item_from_row
    from recommender.services.events import event_from_row

    org, client = _client(make_org, user_client)
    bad_ids = ["a/b", "c,d", "tab\there", ".", ".."]
    items = client.post(
        "/api/recommender/items/batch",
        {"items": [*({"id": i, "title": "T"} for i in bad_ids), {"id": "ok id-1.2_x:y", "title": "T"}]},
        format="json",
    )
    reasons = _reasons(items)
    assert sorted(reasons) == [0, 1, 2, 3, 4]
    assert all(r.startswith("id ") and "the API could not address the item" in r for r in reasons.values())
    assert "'/'" in reasons[0].split(":")[0] and "','" in reasons[1].split(":")[0]
    assert client.get("/api/recommender/items/ok%20id-1.2_x:y/").json()["id"] == "ok id-1.2_x:y"
    events = client.post(
        "/api/recommender/events/batch", {"events": [_event(1, item="i1/x"), _event(2)]}, format="json"
    )
    assert _reasons(events)[0].startswith("item 'i1/x' contains '/'")
    assert set(Item.objects.for_org(org).values_list("external_id", flat=True)) == {"i1", "ok id-1.2_x:y"}
    assert list(Event.objects.for_org(org).values_list("external_id", flat=True)) == ["e2"]
    shipped_items, shipped_events = retail_catalogue_and_events()
    assert len({item_from_row(row).external_id for row in shipped_items}) == len(shipped_items)
    assert all(event_from_row(row).item for row in shipped_events[:2000])


def _in_thread(target, errors: list) -> threading.Thread:
    """``target`` in a thread with its own database connection (closed at the end)."""

    def run() -> None:
        try:
            target()
        except Exception as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    return threading.Thread(target=run)


@pytest.mark.django_db(transaction=True)
def test_parallel_batches_cannot_pass_the_catalogue_quota(make_org):
    """Ten batches of 10 new items at the same instant, each in its own connection and transaction, against
    a limit of 32 with 12 items stored: exactly two fit (without the lock most of the ten were stored)."""
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id="catalogue_items", defaults={"limit": 32})
    for round_ in range(2):
        org, _ = make_org()
        catalogue.items_upsert(organisation=org, rows=[{"id": f"s{n}", "title": "Old"} for n in range(12)])
        barrier, errors, outcomes = threading.Barrier(10), [], []

        def batch(n: int, org=org, barrier=barrier, outcomes=outcomes) -> None:
            rows = [{"id": f"b{n}-{i}", "title": "New"} for i in range(10)]
            barrier.wait(10)
            try:
                outcomes.append(catalogue.items_upsert(organisation=org, rows=rows).created)
            except QuotaExceeded:
                outcomes.append(0)

        threads = [_in_thread(lambda n=n: batch(n), errors) for n in range(10)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, errors
        assert sorted(outcomes) == [0] * 8 + [10, 10], (round_, outcomes)
        assert catalogue.catalogue_count(org) == 32


def test_stored_events_are_a_stock_meter_with_a_plan_limit(make_org, user_client):
    org, client = _client(make_org, user_client)
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id="stored_events", defaults={"limit": 5})
    ok = client.post(
        "/api/recommender/events/batch", {"events": [_event(n) for n in range(4)]}, format="json"
    )
    assert ok.status_code == 200 and ok.json()["created"] == 4
    refused = client.post(
        "/api/recommender/events/batch", {"events": [_event(n) for n in range(2, 6)]}, format="json"
    )  # two already stored, two new: one too many
    assert refused.status_code == 402, refused.content
    assert refused.json()["error"]["details"]["meter"] == "stored_events"
    again = client.post("/api/recommender/events/batch", {"events": [_event(1), _event(4)]}, format="json")
    assert again.json()["created"] == 1 and again.json()["existing"] == 1
    when = (timezone.now() - timedelta(hours=1)).isoformat()
    data = f"id,user,item,type,occurred_at\ne0,u1,i1,view,{when}\nf1,u1,i1,view,{when}\n".encode()
    upload = client.post(
        "/api/recommender/events/upload", {"file": SimpleUploadedFile("e.csv", data)}, format="multipart"
    )
    assert upload.status_code == 402 and upload.json()["error"]["details"]["meter"] == "stored_events"
    assert Event.objects.for_org(org).count() == 5
    usage = {row["meter"]: row for row in client.get("/api/usage/").json()["meters"]}
    assert usage["stored_events"]["used"] == 5 and usage["stored_events"]["limit"] == 5


def test_restoring_a_deleted_item_counts_against_the_catalogue_limit(make_org):
    """A deleted item re-sent as not deleted came back without the quota's check; an item sent deleted takes
    no room, and a batch that deletes as many as it adds fits at the limit."""
    from core.errors import QuotaExceeded
    from recommender.services import catalogue

    org, _ = make_org()
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id="catalogue_items", defaults={"limit": 3})
    catalogue.items_upsert(organisation=org, rows=[{"id": f"i{n}", "title": f"Item {n}"} for n in range(3)])
    catalogue.items_upsert(organisation=org, rows=[{"id": "i0", "title": "Item 0", "deleted": True}])
    catalogue.items_upsert(organisation=org, rows=[{"id": "i3", "title": "Item 3"}])  # the freed place
    assert catalogue.catalogue_count(org) == 3
    with pytest.raises(QuotaExceeded):
        catalogue.items_upsert(organisation=org, rows=[{"id": "i0", "title": "Item 0", "deleted": False}])
    assert catalogue.catalogue_count(org) == 3
    catalogue.items_upsert(organisation=org, rows=[{"id": "gone", "title": "Gone", "deleted": True}])
    swap = [
        {"id": "i1", "title": "Item 1", "deleted": True},
        {"id": "i0", "title": "Item 0", "deleted": False},
    ]
    catalogue.items_upsert(organisation=org, rows=swap)
    assert catalogue.catalogue_count(org) == 3
