"""Sources: pushes (one, batch, idempotent), de-duplication, uploads, feeds from a local server, health."""

import time
from datetime import timedelta

import pytest
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
    # the same text, re-punctuated and with a link, under another id: a duplicate, not stored
    copy = client.post(
        f"{BASE}/documents/",
        {"id": "x-2", "text": "RT @wire: ACME shares jump 8%  after earnings!! https://t.co/abc"},
        format="json",
    )
    assert copy.json() == {"status": "duplicate", "duplicate_of": first.json()["id"], "reason": "same text"}
    assert Document.objects.for_org(organisation).count() == 1
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


@pytest.mark.django_db
def test_batch_reports_each_document(make_org, user_client):
    organisation, owner = make_org()
    client = user_client(owner)
    documents = [{"id": f"b{i}", "text": f"Story number {i} about the bond market."} for i in range(5)]
    documents += [
        {"id": "b0", "text": "Story number 0 about the bond market."},  # same id: existing
        {"text": "story number 1 about the BOND market"},  # same text: duplicate
        {"text": "Unique take", "url": "https://n.example.com/1"},
        {"text": "Another take", "url": "https://n.example.com/1"},  # same url within the batch
        {"text": ""},  # rejected
        {"text": "ok", "colour": "red"},  # unknown field: rejected
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
    ]
    assert answer.json()["counts"] == {"created": 6, "existing": 0, "duplicate": 3, "rejected": 2}
    again = client.post(f"{BASE}/documents/batch", {"documents": documents[:5]}, format="json")
    assert [r["status"] for r in again.json()["results"]] == ["existing"] * 5
    assert Document.objects.for_org(organisation).count() == 6
    too_many = client.post(f"{BASE}/documents/batch", {"documents": [{"text": "x"}] * 1001}, format="json")
    assert too_many.status_code == 400
    listed = client.get(f"{BASE}/documents/?q=bond&page_size=2").json()
    assert listed["count"] == 5 and len(listed["results"]) == 2


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
    # the same text in another organisation is not a duplicate there
    again = other.post(f"{BASE}/documents/", {"text": "A's secret story"}, format="json")
    assert again.status_code == 201
    page = user_client(owner_b).get("/finance-monitor/")
    assert page.status_code == 200 and b"A feed" not in page.content
    assert b"A feed" in user_client(owner_a).get("/finance-monitor/").content
