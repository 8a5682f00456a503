"""Sources: pushes (one, batch, idempotent), de-duplication, uploads, feeds from a local server, health."""

import json
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from finance_monitor import selectors
from finance_monitor.models import Document, FeedPoll, Source
from finance_monitor.services import documents as docs
from finance_monitor.services import feeds
from tests.finance_monitor.conftest import slow_writer

BASE = "/api/finance-monitor"


def rss(items: list[tuple[str, str, str]]) -> bytes:
    entries = "".join(
        f"<item><guid>{guid}</guid><title>{title}</title><link>https://news.example.com/{guid}</link>"
        f"<description>{text}</description><pubDate>Wed, 02 Dec 2026 09:00:00 GMT</pubDate></item>"
        for guid, title, text in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title><language>en</language>'
        f"{entries}</channel></rss>"
    ).encode()


FEED = rss(
    [
        ("a1", "Acme beats estimates", "Acme Corp reported record quarterly revenue."),
        ("a2", "Globex cuts guidance", "Globex lowered its outlook for the year."),
    ]
)


def test_copies_normalise_alike_and_other_mentions_numbers_and_tickers_do_not():
    same = docs.text_hash("Fed holds rates at 5.25%, says @Reuters https://t.co/a")
    for copy in (
        "RT @wsj: RT @markets: fed holds rates at 5.25% says @reuters  https://t.co/zzz",
        "@desk @wire: Fed holds rates at 5.25%... says @Reuters (via @newsbot)",
        "FED   HOLDS RATES AT 5.25%, SAYS @REUTERS",
    ):
        assert docs.text_hash(copy) == same, copy
    for other in (
        "Fed holds rates at 5.50%, says @Reuters",  # another number
        "Fed holds rates at 5.25%, says @Bloomberg",  # another @mention inside the text
        "Fed holds rates at 5.25%, says $JPM",  # another ticker
    ):
        assert docs.text_hash(other) != same, other


@pytest.mark.django_db
def test_push_one_is_idempotent_by_client_id_and_deduplicates(make_org, make_key, key_client):
    organisation, _ = make_org()
    _, secret = make_key(organisation, scopes=("train", "read"))
    client = key_client(secret)
    body = {
        "id": "x-1",
        "text": "Acme shares jump 8% after earnings.",
        "published_at": "2026-12-01T08:00:00Z",
    }
    first = client.post(f"{BASE}/documents/", body, format="json")
    assert first.status_code == 201, first.json()
    again = client.post(f"{BASE}/documents/", body, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # the same text, re-punctuated and with a link, under another id: a duplicate, stored as a copy
    retweet = {"id": "x-2", "text": "RT @wire: ACME shares jump 8%  after earnings!! https://t.co/abc"}
    copy = client.post(f"{BASE}/documents/", retweet, format="json")
    assert copy.status_code == 200
    copy_id = copy.json()["id"]
    assert copy.json() == {
        "status": "duplicate",
        "duplicate_of": first.json()["id"],
        "reason": "same text",
        "id": copy_id,
    }
    stored = Document.objects.for_org(organisation)
    assert stored.get(pk=copy_id).duplicate_of_id == first.json()["id"]
    assert stored.get(pk=first.json()["id"]).copies == 1
    # the copy's id pushed again is that row, not another copy
    repushed = client.post(f"{BASE}/documents/", retweet, format="json")
    assert repushed.status_code == 200 and repushed.json()["id"] == copy_id
    assert repushed.json()["duplicate_of"] == first.json()["id"] and repushed.json()["copies"] == 0
    assert stored.count() == 2 and stored.get(pk=first.json()["id"]).copies == 1
    detail = client.get(f"{BASE}/documents/{first.json()['id']}/").json()
    assert (detail["copies"], detail["duplicate_of"]) == (1, None)
    naive = client.post(
        f"{BASE}/documents/", {"text": "x y", "published_at": "2026-12-01T08:00:00"}, format="json"
    )
    assert naive.status_code == 400 and "time zone" in naive.json()["error"]["message"]
    future = (timezone.now() + timedelta(days=2)).isoformat()
    ahead = client.post(f"{BASE}/documents/", {"text": "later", "published_at": future}, format="json")
    assert ahead.status_code == 400 and "future" in ahead.json()["error"]["message"]
    empty = client.post(f"{BASE}/documents/", {"text": "  "}, format="json")
    assert empty.status_code == 400
    # a read-only key cannot push
    _, read_only = make_key(organisation, scopes=("read",))
    assert key_client(read_only).post(f"{BASE}/documents/", {"text": "hi"}, format="json").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_a_copy_pushed_while_its_original_is_uncommitted_waits_and_becomes_its_copy(make_org):
    organisation, _ = make_org()
    text = "Chipmaker recalls a batch of processors"
    first_stored, outcomes = threading.Event(), {}

    def original() -> None:
        try:
            with transaction.atomic():
                result = docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text=text)])
                outcomes["original"] = result.outcomes[0]
                first_stored.set()
                time.sleep(0.5)  # the copy's insert waits on this transaction's unique index entry
        finally:
            connection.close()

    def copy() -> None:
        try:
            first_stored.wait(5)
            result = docs.documents_ingest(
                organisation=organisation, items=[docs.DocumentIn(text=f"RT @a: {text}")]
            )
            outcomes["copy"] = result.outcomes[0]
        finally:
            connection.close()

    threads = [threading.Thread(target=original), threading.Thread(target=copy)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert outcomes["original"].status == "created" and not outcomes["original"].copy
    assert outcomes["copy"].copy and outcomes["copy"].duplicate_of == outcomes["original"].document_id
    stored = Document.objects.for_org(organisation)
    assert stored.count() == 2 and stored.get(pk=outcomes["original"].document_id).copies == 1


@pytest.mark.django_db
def test_batch_reports_each_document(make_org, user_client):
    organisation, owner = make_org()
    client = user_client(owner)
    documents = [{"id": f"b{i}", "text": f"Story number {i} about the bond market."} for i in range(5)]
    documents += [
        {"id": "b0", "text": "Story number 0 about the bond market."},  # same id: existing
        {"text": "story number 1 about the BOND market"},  # same text: duplicate, stored as a copy
        {"text": "Unique take", "url": "https://n.example.com/1"},
        {"text": "Another take", "url": "https://n.example.com/1"},  # same url within the batch
        {"text": ""},  # rejected
        {"text": "ok", "colour": "red"},  # unknown field: rejected
        {"text": "Naive time", "published_at": "2026-01-02T03:04:05"},  # no time zone: rejected
        {"text": "Aware time", "published_at": "2026-01-02T03:04:05+01:00"},  # each entry's own time read
    ]
    answer = client.post(f"{BASE}/documents/batch", {"documents": documents}, format="json")
    assert answer.status_code == 200, answer.json()
    statuses = [r["status"] for r in answer.json()["results"]]
    assert statuses == ["created"] * 5 + [
        "duplicate",
        "duplicate",
        "created",
        "duplicate",
        "rejected",
        "rejected",
        "rejected",
        "created",
    ]
    assert answer.json()["counts"] == {
        "created": 7,
        "existing": 0,
        "duplicate": 3,
        "rejected": 3,
        "copies": 1,
    }
    results = answer.json()["results"]
    assert [r["reason"] for r in results[9:12]] == [
        "text: This field may not be blank.",
        "colour: Unknown field.",
        "published_at: published_at needs a time zone.",
    ]
    copy_id, original_id = results[6]["document_id"], results[1]["document_id"]
    assert results[6]["copy"] and results[6]["duplicate_of"] == original_id
    assert not results[5]["copy"] and results[5]["document_id"] is None  # the same id twice in a batch
    again = client.post(f"{BASE}/documents/batch", {"documents": documents[:5]}, format="json")
    assert [r["status"] for r in again.json()["results"]] == ["existing"] * 5
    assert Document.objects.for_org(organisation).count() == 8
    too_many = client.post(f"{BASE}/documents/batch", {"documents": [{"text": "x"}] * 1001}, format="json")
    assert too_many.status_code == 400
    # the list hides copies unless asked; an original says how many it has; copy_of lists them
    listed = client.get(f"{BASE}/documents/?q=bond&page_size=2").json()
    assert listed["count"] == 5 and len(listed["results"]) == 2
    assert client.get(f"{BASE}/documents/?q=bond&copies=show").json()["count"] == 6
    only = client.get(f"{BASE}/documents/?copies=only").json()["results"]
    assert [(d["id"], d["duplicate_of"]) for d in only] == [(copy_id, original_id)]
    shown = {d["id"]: d["copies"] for d in client.get(f"{BASE}/documents/?q=bond").json()["results"]}
    assert shown[original_id] == 1 and sum(shown.values()) == 1
    assert [d["id"] for d in client.get(f"{BASE}/documents/?copy_of={original_id}").json()["results"]] == [
        copy_id
    ]
    bad = client.get(f"{BASE}/documents/?copies=all")
    assert bad.status_code == 400 and "copies must be one of" in bad.json()["error"]["message"]
    assert client.get(f"{BASE}/documents/?copy_of=abc").status_code == 400
    # a text whose first item is not stored (same url as another document) is stored once, as an original
    odd = [
        {"text": "Fresh angle on gilts", "url": "https://n.example.com/1"},
        {"text": "fresh angle on GILTS"},
    ]
    odd_results = client.post(f"{BASE}/documents/batch", {"documents": odd}, format="json").json()["results"]
    assert [(r["status"], r["copy"]) for r in odd_results] == [("duplicate", False), ("created", False)]
    # copies with ids, pushed twice: the second push is the same rows, not new copies
    retweets = [
        {"id": f"rt{i}", "text": f"RT @desk: Story number 2 about the bond market {'!' * i}"}
        for i in range(2)
    ]
    made = client.post(f"{BASE}/documents/batch", {"documents": retweets}, format="json").json()
    repeat = client.post(f"{BASE}/documents/batch", {"documents": retweets}, format="json").json()
    assert made["counts"]["copies"] == 2 and repeat["counts"] == {
        "created": 0,
        "existing": 2,
        "duplicate": 0,
        "rejected": 0,
        "copies": 0,
    }
    assert [r["document_id"] for r in repeat["results"]] == [r["document_id"] for r in made["results"]]
    third = Document.objects.for_org(organisation).get(client_id="b2")
    assert third.copies == 2


@pytest.mark.django_db
def test_upload_csv_and_jsonl_with_rejections(make_org, user_client):
    organisation, owner = make_org()
    client = user_client(owner)
    csv_body = (
        b"id,text,published_at\n"
        b"u1,Rates unchanged at the central bank,2026-12-01T10:00:00+01:00\n"
        b"u2,,2026-12-01T10:00:00Z\n"
        b"u3,Oil falls on supply news,yesterday\n"
        b"u4,Gold steady,2026-12-01T10:00:00\n"
    )
    from django.core.files.uploadedfile import SimpleUploadedFile

    answer = client.post(
        f"{BASE}/documents/upload", {"file": SimpleUploadedFile("docs.csv", csv_body)}, format="multipart"
    )
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    assert body["created"] == 1 and body["rows"] == 4
    assert [(r["line"], r["reason"][:20]) for r in body["rejected"]] == [
        (3, "text is empty"),
        (4, "published_at 'yester"),
        (5, "published_at needs a"),
    ]
    jsonl = b'{"id": "j1", "text": "Bank of X raises rates"}\nnot json\n[1]\n{"text": 5}\n'
    answer = client.post(
        f"{BASE}/documents/upload", {"file": SimpleUploadedFile("d.jsonl", jsonl)}, format="multipart"
    )
    assert answer.json()["created"] == 1 and len(answer.json()["rejected"]) == 3
    bad = client.post(
        f"{BASE}/documents/upload", {"file": SimpleUploadedFile("d.txt", b"hello")}, format="multipart"
    )
    assert bad.status_code == 400 and ".csv or .jsonl" in bad.json()["error"]["message"]
    assert Source.objects.for_org(organisation).get(name="Uploads").kind == "upload"


@pytest.mark.django_db
def test_feed_poll_conditional_get_and_dedupe(make_org, http_server):
    organisation, _ = make_org()
    http_server.routes["/feed"] = lambda r: (
        (304, {}, b"")
        if r["headers"].get("If-None-Match") == '"v1"'
        else (200, {"ETag": '"v1"', "Content-Type": "application/rss+xml"}, FEED)
    )
    http_server.routes["/moved"] = lambda r: (301, {"Location": "/feed"}, b"")
    source = feeds.feed_create(organisation=organisation, name="Wire", feed_url=http_server.url + "/moved")
    poll = feeds.feed_poll(source=source)
    assert (poll.outcome, poll.created, poll.entries) == ("ok", 2, 2)
    document = Document.objects.for_org(organisation).get(client_id="a1")
    assert document.title == "Acme beats estimates" and document.published_at.tzinfo is not None
    assert document.language == "en" and document.source_id == source.pk
    source.refresh_from_db()
    assert source.etag == '"v1"' and source.last_success_at and source.consecutive_failures == 0
    second = feeds.feed_poll(source=source)
    assert second.outcome == "not_modified" and second.status_code == 304
    assert Document.objects.for_org(organisation).count() == 2
    # the validator forgotten: the body comes again and its entries are recognised
    source.etag = ""
    third = feeds.feed_poll(source=source)
    assert (third.outcome, third.created, third.duplicates) == ("ok", 0, 2)


HOSTILE = {
    "/not-xml": lambda r: (200, {"Content-Type": "text/html"}, b"<html><body>Hello</body></html>"),
    "/laughs": lambda r: (
        200,
        {},
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b"<rss version='2.0'><channel><title>&lol2;</title></channel></rss>",
    ),
    "/big": lambda r: (200, {"Content-Length": str(200 * 1024 * 1024)}, b""),
    "/loop": lambda r: (302, {"Location": "/loop2"}, b""),
    "/loop2": lambda r: (302, {"Location": "/loop"}, b""),
    "/e500": lambda r: (500, {}, b"oops"),
}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path,reason",
    [
        ("/not-xml", "not an RSS or Atom feed"),
        ("/laughs", "declares XML entities"),
        ("/big", "over the"),
        ("/loop", "redirect loop"),
        ("/e500", "HTTP 500"),
        ("/hang", "no answer within"),
        ("/drip", "longer than"),
        ("/stream", "over the"),
    ],
)
def test_hostile_feeds_are_refused_with_a_record(make_org, http_server, path, reason):
    organisation, _ = make_org()
    http_server.routes.update(HOSTILE)
    http_server.routes["/hang"] = lambda r: lambda handler: time.sleep(3)  # no status line at all
    http_server.routes["/drip"] = lambda r: slow_writer(4)
    http_server.routes["/stream"] = lambda r: (200, {"Content-Length": "3000"}, b"x" * 3000)
    source = feeds.feed_create(organisation=organisation, name="Bad", feed_url=http_server.url + path)
    poll = feeds.feed_poll(source=source, timeouts=(1.0, 1.0), deadline_s=1.5, max_bytes=2000)
    assert poll.outcome == "error" and reason in poll.error, poll.error
    source.refresh_from_db()
    assert reason in source.last_error and source.consecutive_failures == 1 and source.last_success_at is None
    assert FeedPoll.objects.for_org(organisation).filter(source=source).count() == 1
    assert Document.objects.for_org(organisation).count() == 0


@pytest.mark.django_db
def test_source_health_quiet_and_failing(make_org, http_server):
    organisation, _ = make_org()
    http_server.routes["/e500"] = HOSTILE["/e500"]
    source = feeds.feed_create(organisation=organisation, name="Flaky", feed_url=http_server.url + "/e500")
    for _ in range(feeds.FAILING_AFTER):
        feeds.feed_poll(source=source)
    health = selectors.source_health(source=source)
    assert health.status == "failing" and "HTTP 500" in health.warning
    pushed = docs.source_for(organisation=organisation, kind="api", name="API")
    docs.documents_ingest(organisation=organisation, items=[docs.DocumentIn(text="one story")], source=pushed)
    pushed.refresh_from_db()
    assert selectors.source_health(source=pushed).status == "ok"
    later = timezone.now() + timedelta(days=2)
    health = selectors.source_health(source=pushed, now=later)
    assert health.status == "quiet" and "no new document for 4" in health.warning
    assert selectors.source_health(source=pushed).documents_per_day[-1][1] == 1


@pytest.mark.django_db
def test_beat_claims_due_feeds_once(make_org, http_server):
    organisation, _ = make_org()
    source = feeds.feed_create(organisation=organisation, name="Due", feed_url=http_server.url + "/feed")
    assert feeds.feeds_due() == [source.pk]
    assert feeds.feeds_due() == []  # claimed: the next tick waits for its interval
    assert source.pk in feeds.feeds_due(now=timezone.now() + timedelta(seconds=901))
    from core.celery import app

    assert app.conf.beat_schedule["finance-monitor-poll-feeds"]["task"] == "finance_monitor.poll_feeds"


@pytest.mark.django_db
def test_tenant_isolation_of_documents_and_sources(make_org, user_client, http_server):
    org_a, owner_a = make_org()
    org_b, owner_b = make_org()
    created = user_client(owner_a).post(f"{BASE}/documents/", {"text": "A's secret story"}, format="json")
    source = feeds.feed_create(organisation=org_a, name="A feed", feed_url=http_server.url + "/feed")
    other = user_client(owner_b)
    assert other.get(f"{BASE}/documents/{created.json()['id']}/").status_code == 404
    assert other.get(f"{BASE}/documents/").json()["count"] == 0
    assert other.get(f"{BASE}/sources/{source.pk}/").status_code == 404
    assert other.patch(f"{BASE}/sources/{source.pk}/", {"enabled": False}, format="json").status_code == 404
    assert other.delete(f"{BASE}/sources/{source.pk}/").status_code == 404
    assert other.post(f"{BASE}/sources/{source.pk}/poll").status_code == 404
    assert other.get(f"{BASE}/sources/{source.pk}/polls/").status_code == 404
    assert [s["name"] for s in other.get(f"{BASE}/sources/").json()["results"]] == []
    # the same text in another organisation is not a duplicate there: A's document never becomes its original
    again = other.post(f"{BASE}/documents/", {"text": "A's secret story"}, format="json")
    assert again.status_code == 201 and again.json()["duplicate_of"] is None
    b_copy = other.post(f"{BASE}/documents/", {"text": "RT @x: a's secret story!"}, format="json").json()
    assert b_copy["duplicate_of"] == again.json()["id"]
    assert Document.objects.for_org(org_a).get(pk=created.json()["id"]).copies == 0
    # and B cannot list A's copies
    assert other.get(f"{BASE}/documents/?copy_of={created.json()['id']}").status_code == 404
    assert (
        user_client(owner_b).get(f"/finance-monitor/documents/?copy_of={created.json()['id']}").status_code
        == 404
    )
    page = user_client(owner_b).get("/finance-monitor/")
    assert page.status_code == 200 and b"A feed" not in page.content
    assert b"A feed" in user_client(owner_a).get("/finance-monitor/").content


@pytest.mark.django_db
def test_control_characters_in_a_feed_are_scrubbed_and_the_poll_stored(make_org, http_server):
    organisation, _ = make_org()
    body = (
        b"<rss version='2.0'><channel><title>t</title><item><title>Bad&#0;title&#7;</title>"
        b"<description>Hello &#0; world\x01 stocks fall</description><link>https://x.example/a</link>"
        b"<guid>g&#0;1</guid></item></channel></rss>"
    )
    http_server.routes["/nul"] = lambda r: (200, {"Content-Type": "application/rss+xml"}, body)
    source = feeds.feed_create(organisation=organisation, name="Nul", feed_url=http_server.url + "/nul")
    poll = feeds.feed_poll(source=source)
    assert (poll.outcome, poll.created) == ("ok", 1), poll.error
    document = Document.objects.for_org(organisation).get()
    assert document.text == "Hello world stocks fall" and document.title == "Bad title"
    assert "\x00" not in document.client_id and document.client_id.startswith("g")


@pytest.mark.django_db
def test_an_unexpected_failure_of_a_poll_is_recorded_and_the_next_poll_moved_on(
    make_org, http_server, monkeypatch
):
    from django.db import DataError

    organisation, _ = make_org()
    http_server.routes["/feed"] = lambda r: (200, {}, FEED)
    source = feeds.feed_create(organisation=organisation, name="Odd", feed_url=http_server.url + "/feed")

    def refuse(**kwargs):  # a fault injected where the database refused a value (the audit's DataError)
        raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")

    monkeypatch.setattr(docs, "documents_ingest", refuse)
    before = timezone.now()
    poll = feeds.feed_poll(source=source)
    assert poll.pk and poll.outcome == "error" and "DataError" in poll.error, poll.error
    source.refresh_from_db()
    assert "DataError" in source.last_error and source.consecutive_failures == 1
    assert source.next_poll_at > before + timedelta(seconds=source.poll_interval_s - 5)
    assert Document.objects.for_org(organisation).count() == 0


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_a_trickling_feed_is_given_up_at_the_deadline(trickler, settings, mode):
    settings.OUTBOUND_ALLOW_NETWORKS = ["127.0.0.1/32"]
    server = trickler(mode)
    started = time.monotonic()
    with pytest.raises(feeds.FeedError, match="longer than"):
        feeds.fetch(server.url + "/feed", deadline_s=1.5, timeouts=(1.0, 1.0))
    assert time.monotonic() - started < 2.2


@pytest.mark.django_db
def test_hostile_upload_rows_are_rejected_each_with_its_reason(make_org, user_client):
    """Year 1 with a positive offset (a BC time in UTC, unreadable once stored), a NUL in a cell and a JSONL
    line nested 50,000 deep: each a rejected row, never a 500 nor a row that breaks later reads."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    organisation, owner = make_org()
    client = user_client(owner)
    csv_body = (
        b"id,text,published_at\n"
        b"c1,Ancient news,0001-01-01T00:00:00+14:00\n"
        b"c2,Old news,1850-06-01T00:00:00Z\n"
        b"c3,Nul \x00 news,2026-12-01T10:00:00Z\n"
        b"c4,Fine news,2026-12-01T10:00:00Z\n"
    )
    answer = client.post(
        f"{BASE}/documents/upload", {"file": SimpleUploadedFile("d.csv", csv_body)}, format="multipart"
    )
    assert answer.status_code == 201, answer.json()
    assert answer.json()["created"] == 1
    reasons = {r["line"]: r["reason"] for r in answer.json()["rejected"]}
    assert "published_at" in reasons[2] and "out of range" in reasons[2]
    assert "published_at" in reasons[3] and "out of range" in reasons[3]
    assert reasons[4] == "text contains a NUL character"
    deep = b'{"text": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    jsonl = b'{"id": "j1", "text": "Bank of X raises rates"}\n' + deep + b'\n{"text": "a\\u0000b"}\n'
    answer = client.post(
        f"{BASE}/documents/upload", {"file": SimpleUploadedFile("d.jsonl", jsonl)}, format="multipart"
    )
    assert answer.status_code == 201, answer.json()
    assert answer.json()["created"] == 1
    assert [(r["line"], r["reason"]) for r in answer.json()["rejected"]] == [
        (2, "not JSON we read (nested too deeply)"),
        (3, "text contains a NUL character"),
    ]
    # what was stored reads back: the list and the export
    assert client.get(f"{BASE}/documents/").json()["count"] == 2
    pushed = client.post(
        f"{BASE}/documents/", {"text": "x y", "published_at": "1850-01-01T00:00:00Z"}, format="json"
    )
    assert pushed.status_code == 400 and "out of range" in pushed.json()["error"]["message"]


@pytest.mark.django_db
def test_non_ascii_digits_in_id_query_params_are_a_400_not_a_500(make_org, user_client):
    organisation, owner = make_org()
    client = user_client(owner)
    for url in (
        f"{BASE}/documents/?source=%C2%B2",
        f"{BASE}/documents/?entity=%C2%B2",
        f"{BASE}/documents/?copy_of=%C2%B2",
        f"{BASE}/alerts/?rule=%C2%B2",
        f"{BASE}/documents/?source=99999999999999999999999",
    ):
        answer = client.get(url)
        assert answer.status_code == 400 and "whole number" in answer.json()["error"]["message"], url
    trend = client.get(f"{BASE}/trends/?dimension=entity&key=%C2%B2")
    assert trend.status_code == 404 and "watch-list" in trend.json()["error"]["message"]


@pytest.mark.django_db
def test_a_feed_never_polled_successfully_is_new_then_failing_never_ok(make_org, http_server):
    organisation, _ = make_org()
    http_server.routes["/e500"] = HOSTILE["/e500"]
    http_server.routes["/feed"] = lambda r: (200, {}, FEED)
    source = feeds.feed_create(organisation=organisation, name="Fresh", feed_url=http_server.url + "/e500")
    assert selectors.source_health(source=source).status == "new"
    feeds.feed_poll(source=source)
    source.refresh_from_db()
    health = selectors.source_health(source=source)
    assert health.status == "failing" and "HTTP 500" in health.warning
    source.feed_url = http_server.url + "/feed"
    feeds.feed_poll(source=source)
    source.refresh_from_db()
    assert selectors.source_health(source=source).status == "ok"


@pytest.mark.django_db
def test_an_organisation_names_at_most_500_push_and_upload_sources(make_org, user_client):
    """Each upload may name a source of its own: the 501st name is a 400 saying the cap, and nothing of that
    file is stored; a name already there still takes uploads; feeds do not count."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from finance_monitor.services import documents

    organisation, owner = make_org()
    Source.all_tenants.bulk_create(
        [
            Source(organisation=organisation, name=f"desk {n}", kind="upload")
            for n in range(documents.MAX_NAMED_SOURCES - 1)
        ]
        + [Source(organisation=organisation, name="Wire", kind="feed", feed_url="https://x.test/f")]
    )
    client = user_client(owner)

    def upload(source: str, text: str):
        body = f"id,text\n{text[:8]},{text}\n".encode()
        file = SimpleUploadedFile("d.csv", body)
        return client.post(f"{BASE}/documents/upload", {"file": file, "source": source}, format="multipart")

    assert upload("desk 500", "Rates unchanged at the central bank").status_code == 201
    over = upload("desk 501", "Oil falls on supply news")
    assert over.status_code == 400
    assert over.json()["error"]["message"].startswith(
        "An organisation keeps at most 500 push and upload sources"
    )
    assert not Source.objects.for_org(organisation).filter(name="desk 501").exists()
    assert not Document.objects.for_org(organisation).filter(text="Oil falls on supply news").exists()
    assert upload("desk 7", "Gold steady as the dollar slips").json()["created"] == 1


@pytest.mark.django_db
def test_an_organisation_polls_at_most_100_feeds(make_org, user_client):
    """Beat polls every feed: the 101st (disabled ones count: they can be turned back on) is a 400 saying
    the cap; push and upload sources are not feeds and do not count; deleting one makes room."""
    organisation, owner = make_org()
    Source.all_tenants.bulk_create(
        [
            Source(organisation=organisation, name=f"feed {n}", kind="feed", feed_url=f"https://x.test/{n}")
            for n in range(feeds.MAX_FEEDS - 1)
        ]
        + [Source(organisation=organisation, name="API", kind="api")]
    )
    Source.all_tenants.filter(organisation=organisation, name="feed 0").update(enabled=False)
    client = user_client(owner)
    body = {"name": "Wire", "feed_url": "http://127.0.0.1:9/feed"}
    assert client.post(f"{BASE}/sources/", body, format="json").status_code == 201
    over = client.post(f"{BASE}/sources/", {**body, "name": "Wire 2"}, format="json")
    assert over.status_code == 400
    assert (
        over.json()["error"]["message"]
        == "An organisation keeps at most 100 feeds: delete one to add another."
    )
    assert Source.objects.for_org(organisation).filter(kind="feed").count() == 100
    wire = Source.objects.for_org(organisation).get(name="Wire")
    assert client.delete(f"{BASE}/sources/{wire.pk}/").status_code == 204
    assert client.post(f"{BASE}/sources/", {**body, "name": "Wire 2"}, format="json").status_code == 201


@pytest.mark.django_db
def test_poll_now_is_queued_on_a_worker_and_its_outcome_joins_the_poll_history(
    make_org, user_client, http_server, django_capture_on_commit_callbacks
):
    """POST sources/{id}/poll answers 202 at once with where the outcome will be (the poll history), and
    sends one poll_feed task to the default queue after commit (asking again while it waits sends none);
    the task, run as the worker runs it, polls the feed."""
    import redis
    from django.conf import settings

    from core.celery import app
    from finance_monitor import tasks

    http_server.routes["/feed"] = lambda request: (200, {"Content-Type": "application/rss+xml"}, FEED)
    organisation, owner = make_org()
    source = feeds.feed_create(organisation=organisation, name="Wire", feed_url=http_server.url + "/feed")
    feeds.feed_poll_started(source_id=source.pk)  # the cache outlives test databases: no key of an old run
    client = user_client(owner)
    app.control.purge()
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(f"{BASE}/sources/{source.pk}/poll")
        again = client.post(f"{BASE}/sources/{source.pk}/poll")
    polls = f"{BASE}/sources/{source.pk}/polls/"
    assert answer.status_code == again.status_code == 202
    assert answer.json() == {"source": source.pk, "status": "queued", "polls": polls}
    assert broker.llen("default") == 1 and http_server.requests == []  # queued, not fetched in the request
    assert json.loads(broker.lindex("default", 0))["headers"]["task"] == "finance_monitor.poll_feed"
    app.control.purge()
    assert tasks.poll_feed(source.pk) == "ok"
    [poll] = client.get(polls).json()
    assert (poll["outcome"], poll["created"]) == ("ok", 2)
    with django_capture_on_commit_callbacks(execute=True):  # the poll started: asking queues the next one
        assert client.post(f"{BASE}/sources/{source.pk}/poll").status_code == 202
    assert broker.llen("default") == 1
    app.control.purge()
    api_source = docs.source_for(organisation=organisation, kind="api", name="API")
    refused = client.post(f"{BASE}/sources/{api_source.pk}/poll")
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "Only feeds can be polled."
