"""Polling RSS/Atom feeds: a capped, timed, redirect-limited conditional GET, then feedparser on the bytes.

The HTTP fetch is ours (``requests`` streaming, read in chunks): feedparser is handed bytes, never a URL,
so it never opens a connection. Refused, each with the reason recorded on the source and its poll:
a body over ``MAX_FEED_BYTES`` (counted while reading, whatever Content-Length says), a server slower than
the connect/read timeouts or than the whole-fetch deadline, more than ``MAX_REDIRECTS`` redirects or a loop,
a scheme other than http(s), a DOCTYPE that declares entities (billion laughs, external entities: no
legitimate feed needs one), and a body that is not a feed.
"""

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit

import feedparser
import requests
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core.celery import app as celery_app
from core.errors import InvalidInput, QuotaExceeded
from core.jobs.queues import Queue
from core.outbound import (
    OutboundRefused,
    OutboundTimeout,
    outbound_deadline,
    outbound_session,
    outbound_url_check,
)
from finance_monitor.models import FeedPoll, Source, SourceKind
from finance_monitor.services import documents as docs
from finance_monitor.services.caps import cap_check

MAX_FEED_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 5
CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 10.0
DEADLINE_S = 30.0
MIN_POLL_INTERVAL_S = 60
POLL_TASK = "finance_monitor.poll_feed"
POLL_QUEUED_FOR_S = 300  # a "poll now" waiting this long (no worker?) no longer holds the next one back
MAX_FEEDS = 100  # per organisation: beat polls them all (services.caps)
FAILING_AFTER = 3  # consecutive failures before the source is shown as failing
USER_AGENT = "Trellis-FinanceMonitor/1.0 (+feed poller)"
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
# C0 control characters but tab, newline and carriage return, and DEL: a feed's ``&#0;`` is a NUL, which
# PostgreSQL refuses in a text field (the whole poll failed on it); the others are noise in a headline
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

log = logging.getLogger(__name__)


class FeedError(Exception):
    """Why a fetch or parse was refused (recorded on the source)."""


@dataclass
class Fetched:
    status: int
    body: bytes
    etag: str
    last_modified: str


def fetch(
    url: str,
    *,
    etag: str = "",
    last_modified: str = "",
    max_bytes: int = MAX_FEED_BYTES,
    deadline_s: float = DEADLINE_S,
    timeouts: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
) -> Fetched:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/rss+xml, application/atom+xml, */*;q=0.5"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    visited: list[str] = []
    # connects only to public addresses (every hop, after DNS) and ignores proxies from the environment; the
    # deadline cuts the connection when the whole fetch (every hop, headers and body) has run deadline_s
    with outbound_deadline(deadline_s) as deadline, outbound_session() as session:
        try:
            return _fetch_hops(session, deadline, url, headers, visited, max_bytes, timeouts)
        except (requests.RequestException, OutboundTimeout, OSError) as exc:
            if deadline.expired:
                raise FeedError(f"fetch took longer than {deadline_s:.0f} s")
            if isinstance(exc, requests.Timeout):
                raise FeedError(f"no answer within {timeouts[0]:.0f}+{timeouts[1]:.0f} s")
            raise FeedError(f"cannot connect: {type(exc).__name__}")


def _fetch_hops(session, deadline, url, headers, visited, max_bytes, timeouts) -> Fetched:  # noqa: ANN001
    etag, last_modified = headers.get("If-None-Match", ""), headers.get("If-Modified-Since", "")
    while True:
        if urlsplit(url).scheme not in ("http", "https"):
            raise FeedError(f"only http(s) feeds can be polled, not '{url[:100]}'")
        if url in visited:
            raise FeedError(f"redirect loop at {url[:200]}")
        if len(visited) > MAX_REDIRECTS:
            raise FeedError(f"more than {MAX_REDIRECTS} redirects")
        visited.append(url)
        left = deadline.remaining()
        if left <= 0:
            raise FeedError(f"fetch took longer than {deadline.seconds:.0f} s")
        hop_timeouts = (min(timeouts[0], left), min(timeouts[1], left))
        try:
            response = session.get(
                url, headers=headers, stream=True, timeout=hop_timeouts, allow_redirects=False
            )
        except OutboundRefused as exc:
            raise FeedError(f"refused: {exc}")
        with response:
            if response.is_redirect:
                location = response.headers.get("Location", "")
                if not location:
                    raise FeedError(f"redirect {response.status_code} without a Location")
                url = urljoin(url, location)
                continue
            if response.status_code == 304:
                return Fetched(304, b"", etag, last_modified)
            if response.status_code != 200:
                raise FeedError(f"HTTP {response.status_code}")
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FeedError(f"body of {int(declared)} bytes is over the {max_bytes} byte cap")
            body = bytearray()
            try:
                for chunk in response.iter_content(chunk_size=16384):
                    body += chunk
                    if len(body) > max_bytes:
                        raise FeedError(f"body is over the {max_bytes} byte cap")
                    if deadline.expired:
                        break
            except requests.RequestException as exc:
                if deadline.expired:
                    raise
                raise FeedError(f"reading the body failed: {type(exc).__name__}")
            if deadline.expired:  # a body without a length ends at the cut: what came is not the feed
                raise FeedError(f"fetch took longer than {deadline.seconds:.0f} s")
            return Fetched(
                200,
                bytes(body),
                response.headers.get("ETag", ""),
                response.headers.get("Last-Modified", ""),
            )


def _published(entry) -> datetime | None:
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    try:
        year, month, day, hour, minute, second = parsed[:6]
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except (TypeError, ValueError):
        return None


_TAGS = re.compile(r"<[^>]+>")


def _clean(value: object) -> str:
    """A feed's text without control characters (a third party writes it: anything can be in it)."""
    return _CONTROLS.sub(" ", value if isinstance(value, str) else "")


def parse(body: bytes) -> list[docs.DocumentIn]:
    """The entries of a feed as documents. Raises FeedError for what is not a (safe) feed."""
    if _ENTITY_DECL.search(body[:65536]):
        raise FeedError("the feed declares XML entities (refused: billion-laughs / external entities)")
    parsed = feedparser.parse(body)
    version = parsed.get("version") or ""
    if not version:
        reason = parsed.get("bozo_exception")
        raise FeedError(f"not an RSS or Atom feed ({type(reason).__name__ if reason else 'unknown format'})")
    now = timezone.now()
    items = []
    for entry in parsed.entries:
        summary = _clean(entry.get("summary"))
        if not summary and entry.get("content"):
            summary = _clean(entry.content[0].get("value", ""))
        title = _TAGS.sub(" ", _clean(entry.get("title"))).strip()
        text = " ".join(_TAGS.sub(" ", summary).split()) or title
        published = _published(entry)
        if published and published > now + docs.FUTURE_TOLERANCE:
            published = None  # a date in the future: kept as unknown (the arrival time counts)
        items.append(
            docs.DocumentIn(
                text=text[: docs.MAX_TEXT_CHARS],
                title=title[: docs.MAX_TITLE_CHARS],
                url=_clean(entry.get("link")).strip()[:2000],
                author=_clean(entry.get("author")).strip()[:200],
                language=_clean(parsed.feed.get("language")).strip()[:16],
                published_at=published,
                client_id=_clean(entry.get("id")).strip()[:200],
            )
        )
    return items


def feed_create(*, organisation, name: str, feed_url: str, poll_interval_s: int = 900) -> Source:
    if urlsplit(feed_url).scheme not in ("http", "https") or not urlsplit(feed_url).netloc:
        raise InvalidInput("feed_url must be an http(s) address.")
    outbound_url_check(feed_url, what="feed_url", field="feed_url")
    if poll_interval_s < MIN_POLL_INTERVAL_S:
        raise InvalidInput(f"poll_interval_s must be at least {MIN_POLL_INTERVAL_S}.")
    if Source.objects.for_org(organisation).filter(name=name).exists():
        raise InvalidInput(f"A source named '{name}' exists already.")
    with transaction.atomic():
        feeds = Source.objects.for_org(organisation).filter(kind=SourceKind.FEED)
        cap_check(organisation=organisation, rows=feeds, limit=MAX_FEEDS, what="feeds")
        return Source.objects.for_org(organisation).create(
            organisation=organisation,
            name=name,
            kind=SourceKind.FEED,
            feed_url=feed_url,
            poll_interval_s=poll_interval_s,
            next_poll_at=timezone.now(),
        )


def feed_poll_enqueue(*, source: Source) -> None:
    """Poll a feed soon: the ``poll_feed`` task on the ``default`` queue after commit (a fetch may take up to
    ``DEADLINE_S``, too long to hold a web request); its outcome joins the source's poll history. While one
    waits, asking again queues nothing more."""
    if source.kind != SourceKind.FEED or not source.feed_url:
        raise InvalidInput("Only feeds can be polled.")

    def send() -> None:
        if cache.add(_poll_queued_key(source.pk), 1, timeout=POLL_QUEUED_FOR_S):
            celery_app.send_task(POLL_TASK, args=[source.pk], queue=Queue.DEFAULT)

    transaction.on_commit(send)


def feed_poll_started(*, source_id: int) -> None:
    """A poll of the feed has started: asking from now on queues the next one."""
    cache.delete(_poll_queued_key(source_id))


def _poll_queued_key(source_id: int) -> str:
    return f"fm:poll-queued:{source_id}"


def feed_poll(*, source: Source, **fetch_options) -> FeedPoll:
    """Fetch, parse and ingest one feed; record the outcome on the source (health) and as a FeedPoll."""
    started = time.monotonic()
    now = timezone.now()
    poll = FeedPoll(organisation_id=source.organisation_id, source=source, outcome="error")
    try:
        fetched = fetch(
            source.feed_url, etag=source.etag, last_modified=source.last_modified, **fetch_options
        )
        poll.status_code, poll.bytes_read = fetched.status, len(fetched.body)
        if fetched.status == 304:
            poll.outcome = "not_modified"
        else:
            items = parse(fetched.body)
            poll.entries = len(items)
            created = duplicates = 0
            with transaction.atomic():  # over the documents quota nothing of the feed is kept (next poll)
                for start in range(0, len(items), docs.MAX_BATCH):
                    result = docs.documents_ingest(
                        organisation=source.organisation,
                        items=items[start : start + docs.MAX_BATCH],
                        source=source,
                    )
                    counts = result.counts()
                    created += counts["created"]
                    duplicates += counts["duplicate"] + counts["existing"]
            poll.created, poll.duplicates, poll.outcome = created, duplicates, "ok"
            source.etag, source.last_modified = fetched.etag[:500], fetched.last_modified[:100]
    except FeedError as exc:
        poll.error = str(exc)
    except QuotaExceeded as exc:
        poll.error = f"Not stored: {exc.message}"
    except Exception as exc:  # noqa: BLE001 - recorded as a failed poll, never a poll left unrecorded
        # anything unforeseen (a value the database refuses, a parser's bug): without a record the source
        # showed no error and kept its past next_poll_at, so every beat tick downloaded it again
        log.exception("feed %s: the poll failed unexpectedly", source.pk)
        poll.outcome = "error"
        poll.error = f"the poll failed unexpectedly ({type(exc).__name__}); nothing of it was stored"
    poll.duration_ms = int((time.monotonic() - started) * 1000)
    with transaction.atomic():
        poll.save()
        source.refresh_from_db(fields=["last_document_at"])
        source.last_polled_at = now
        source.next_poll_at = now + timedelta(seconds=source.poll_interval_s)
        if poll.outcome == "error":
            source.last_error, source.last_error_at = poll.error, now
            source.consecutive_failures += 1
        else:
            source.last_success_at, source.consecutive_failures = now, 0
        source.save(
            update_fields=[
                "etag",
                "last_modified",
                "last_polled_at",
                "next_poll_at",
                "last_error",
                "last_error_at",
                "last_success_at",
                "consecutive_failures",
                "updated_at",
            ]
        )
    return poll


def feeds_due(*, now: datetime | None = None, limit: int = 100) -> list[int]:
    """Claim the feeds due for a poll (every tenant: the beat task's query); moves their next poll on so
    that a second beat tick does not claim them again while they are polled."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Source.all_tenants.select_for_update(skip_locked=True)
            .filter(kind=SourceKind.FEED, enabled=True, next_poll_at__lte=now)
            .order_by("next_poll_at")[:limit]
        )
        for source in due:
            source.next_poll_at = now + timedelta(seconds=source.poll_interval_s)
            source.save(update_fields=["next_poll_at"])
    return [s.pk for s in due]


def source_delete(*, source: Source) -> None:
    """Remove a source (a feed stops being polled; a replay into it stops); its documents stay, without a
    source."""
    source.delete()


def source_update(*, source: Source, **changes) -> Source:
    for name, value in changes.items():
        setattr(source, name, value)
    if "poll_interval_s" in changes and source.kind == SourceKind.FEED:
        source.next_poll_at = timezone.now() + timedelta(seconds=source.poll_interval_s)
    source.save()
    return source
