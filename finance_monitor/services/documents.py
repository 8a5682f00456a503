"""Accepting documents: validation, de-duplication and idempotency, one or a batch of up to 1,000.

De-duplication is done by PostgreSQL, atomically, with three partial unique constraints per organisation:
the client's id (a re-push returns the stored document), the url (not stored again), and, among originals,
the sha256 of the *normalised* text
(lower case, Unicode NFKC; links, ``RT @user:`` prefixes, a reply's leading @mentions, a trailing ``via
@user``, punctuation and runs of white space removed; @mentions inside the text kept).
The normalised hash catches what duplicates look like in news and social feeds (the same wire story with other
tracking links, a retweet, re-spaced or re-punctuated copies) at O(1) per document and under concurrency, with
no scan (``finance_monitor.near_duplicates`` holds the text rules). Then, in the same transaction,
``services.near_copies`` turns each new original whose text is *near*-identical to an original of the
organisation in the last ``FM_NEAR_DUPLICATE_WINDOW_DAYS`` (a word or two edited, added or dropped, the same
numbers, cashtags, @mentions, negations and watch-list entries, no company written for another; MinHash LSH
bands) into a copy of it, and records the bands of the others (``FM_NEAR_DUPLICATES``, on by default).

A document whose normalised text an earlier one of the organisation holds is a *copy*: stored (so analysts see
that a story was retweeted 40 times), with ``duplicate_of`` its original, whose ``copies`` counts them; it is
answered ``duplicate`` (with ``duplicate_of`` and its own id), and is never tagged, classified, counted in the
trends or taken as an alert's evidence: the original stands for the story.

Metering: every document stored (``created``, and copies; not an ``existing`` re-push, a same-url duplicate or
a rejected item) counts one on the ``documents_ingested`` meter, in the transaction that stores it; copies are
never classified, so never count on ``documents_classified``. A call that would
pass the plan's monthly limit is refused whole (QuotaExceeded, HTTP 402 naming the meter, the limit and what
remains) and stores nothing: a batch is all or nothing, and so is an upload or a feed poll (their callers
wrap every batch of the file or feed in one transaction). Accepted documents queue their classification
(``services.classification``) after commit.
"""

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from core.billing import services as billing
from core.errors import InvalidInput
from finance_monitor.models import Document, Source, SourceKind
from finance_monitor.near_duplicates import normalise_text, text_hash
from finance_monitor.services.caps import cap_check
from finance_monitor.services.classification import classify_enqueue
from finance_monitor.services.entities import documents_tag
from finance_monitor.services.near_copies import near_copies_fingerprint, near_copies_lock, near_copies_mark

METER = "documents_ingested"
MAX_BATCH = 1000
MAX_TEXT_CHARS = 20_000
MAX_TITLE_CHARS = 500
FUTURE_TOLERANCE = timedelta(minutes=10)  # clocks drift; a date further ahead is refused
# the earliest publication time accepted: year 1 with a positive offset is a BC time in UTC, which PostgreSQL
# stores but cannot read back (every later list of the organisation's documents failed on it)
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)  # the first time past the range (year 9999 overflows in UTC)
TIME_RANGE = "1900-01-01 to 9998-12-31 UTC"


def time_in_range(value: datetime) -> bool:
    """Whether an aware time lies in the range the ingest accepts (``TIME_RANGE``): year 1 with a positive
    offset or year 9999 with a negative one cannot even be written in UTC."""
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        return False
    return EARLIEST <= in_utc < LATEST


@dataclass
class DocumentIn:
    text: str
    title: str = ""
    url: str = ""
    author: str = ""
    language: str = ""
    published_at: datetime | None = None
    client_id: str = ""


@dataclass
class Outcome:
    """What became of one pushed document: ``created``, ``existing`` (same client id), ``duplicate`` (same
    url: not stored; same or near-identical text: stored as a copy, ``copy`` true), or ``rejected``."""

    index: int
    status: str
    document_id: int | None = None
    duplicate_of: int | None = None
    reason: str = ""
    copy: bool = False  # a duplicate stored as a copy of ``duplicate_of`` (its id in ``document_id``)


@dataclass
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def created(self) -> list[int]:
        return [o.document_id for o in self.outcomes if o.status == "created" and o.document_id]

    @property
    def copies(self) -> list[int]:
        return [o.document_id for o in self.outcomes if o.copy and o.document_id]

    def counts(self) -> dict[str, int]:
        """Each status's count; ``copies``: how many of the duplicates were stored as copies."""
        out = {"created": 0, "existing": 0, "duplicate": 0, "rejected": 0, "copies": 0}
        for o in self.outcomes:
            out[o.status] += 1
            out["copies"] += o.copy
        return out


def validate(item: DocumentIn, *, now: datetime) -> str:
    """The reason ``item`` is refused ("" if it is acceptable)."""
    if not item.text or not item.text.strip():
        return "text is empty"
    if len(item.text) > MAX_TEXT_CHARS:
        return f"text is longer than {MAX_TEXT_CHARS} characters ({len(item.text)})"
    if len(item.title) > MAX_TITLE_CHARS:
        return f"title is longer than {MAX_TITLE_CHARS} characters"
    if not normalise_text(item.text):
        return "text has no words"
    if item.url and not re.match(r"^https?://[^\s/]+", item.url):
        return "url must be an http(s) address"
    if len(item.url) > 2000 or len(item.client_id) > 200 or len(item.author) > 200 or len(item.language) > 16:
        return "url, id, author or language is too long"
    for name in ("text", "title", "url", "author", "language", "client_id"):
        if "\x00" in getattr(item, name):  # PostgreSQL refuses a NUL in a text field
            return f"{'id' if name == 'client_id' else name} contains a NUL character"
    if item.published_at is not None:
        if timezone.is_naive(item.published_at):
            return "published_at needs a time zone"
        if item.published_at < EARLIEST:
            return "published_at is out of range (before 1900-01-01 UTC)"
        if item.published_at > now + FUTURE_TOLERANCE:
            return "published_at is in the future"
    return ""


MAX_NAMED_SOURCES = 500  # push and upload sources per organisation (each upload may name one; feeds apart)


def source_for(*, organisation, kind: str, name: str) -> Source:
    """The organisation's source of that name (created on first use for pushes and uploads, at most
    ``MAX_NAMED_SOURCES`` of them: every source is a row of the dashboard's source health and filters)."""
    found = Source.objects.for_org(organisation).filter(name=name).first()
    if found is not None:
        return found
    with transaction.atomic():
        named = Source.objects.for_org(organisation).exclude(kind=SourceKind.FEED)
        what = "push and upload sources"
        cap_check(organisation=organisation, rows=named, limit=MAX_NAMED_SOURCES, what=what)
        source, _ = Source.objects.for_org(organisation).get_or_create(
            organisation=organisation, name=name, defaults={"kind": kind}
        )
    return source


def documents_ingest(
    *, organisation, items: list[DocumentIn], source: Source | None = None, strict: bool = False
) -> BatchResult:
    """Store what is new among ``items``; report each one. ``strict``: an invalid item fails the whole call
    (the API's single create) instead of being rejected alone."""
    if len(items) > MAX_BATCH:
        raise InvalidInput(f"A batch holds at most {MAX_BATCH} documents ({len(items)} sent).")
    if source is None:
        source = source_for(organisation=organisation, kind=SourceKind.API, name="API")
    now = timezone.now()
    result = BatchResult()
    pending: list[tuple[int, DocumentIn, str]] = []
    for index, item in enumerate(items):
        reason = validate(item, now=now)
        if reason:
            if strict:
                raise InvalidInput(reason)
            result.outcomes.append(Outcome(index, "rejected", reason=reason))
        else:
            pending.append((index, item, text_hash(item.text)))
    alone = not transaction.get_connection().in_atomic_block  # no caller's transaction around this call
    prints = near_copies_fingerprint(organisation=organisation, texts={item.text for _, item, _ in pending})
    with transaction.atomic():
        # before the inserts: two concurrent near copies of each other wait here, the second sees the first
        near_copies_lock(organisation=organisation, prints=prints.values(), alone=alone)
        result.outcomes.extend(_store(organisation, source, pending, now))
        result.outcomes.sort(key=lambda o: o.index)
        _mark_near_copies(organisation, result, {index: item for index, item, _ in pending}, now, prints)
        created, stored = result.created, sorted(result.created + result.copies)
        if stored:
            # over the quota this raises QuotaExceeded (402) and the transaction keeps nothing of the call
            billing.usage_record(
                organisation=organisation,
                meter=METER,
                quantity=len(stored),
                metadata={"source": source.pk, "documents": [stored[0], stored[-1]]},
            )
            latest = max(now, source.last_document_at or now)
            Source.objects.for_org(organisation).filter(pk=source.pk).update(last_document_at=latest)
        if created:  # copies are neither tagged nor classified: their original stands for them
            documents_tag(organisation=organisation, document_ids=created)
            classify_enqueue(organisation_id=organisation.pk)
    return result


def _store(organisation, source, pending, now) -> list[Outcome]:
    """Insert in one statement, letting the unique constraints decide; then say what each item became.
    Items whose text an earlier document holds are stored next, as copies of it (``_store_copies``)."""
    if not pending:
        return []
    outcomes: list[Outcome] = []
    seen: dict[str, int] = {}  # client id or url -> index of the first item in this batch holding it
    first_of_hash: set[str] = set()
    rows: list[tuple[int, DocumentIn, str]] = []
    copies: list[tuple[int, DocumentIn, str]] = []  # same text as an earlier item of this batch
    for index, item, digest in pending:
        keys = ([f"u:{item.url}"] if item.url else []) + ([f"c:{item.client_id}"] if item.client_id else [])
        first = next((seen[k] for k in keys if k in seen), None)
        if first is not None:
            outcomes.append(Outcome(index, "duplicate", reason=f"same as item {first} of this batch"))
            continue
        seen.update({k: index for k in keys})
        if digest in first_of_hash:
            copies.append((index, item, digest))
        else:
            first_of_hash.add(digest)
            rows.append((index, item, digest))
    Document.all_tenants.bulk_create(
        [_row(organisation, source, item, digest, now) for _, item, digest in rows], ignore_conflicts=True
    )
    stored = _stored(organisation, rows)
    for index, item, digest in rows:
        outcome = _outcome(index, item, digest, stored, source, now)
        if outcome is None:  # its text is another document's: a copy of it
            copies.append((index, item, digest))
        else:
            outcomes.append(outcome)
    done, orphans = _store_copies(organisation, source, copies, stored["h"], now)
    outcomes.extend(done)
    if (
        orphans
    ):  # the first item of their text was not stored (same url as another): one of them is the original
        outcomes.extend(_store(organisation, source, orphans, now))
    return outcomes


def _mark_near_copies(organisation, result: BatchResult, items: dict[int, DocumentIn], now, prints) -> None:
    """The originals just stored that are near copies of an earlier original become its copies (their
    outcomes say so, like an exact copy's); the exact copies stored of them follow them to that original."""
    created = [
        (o.document_id, items[o.index].text)
        for o in result.outcomes
        if o.status == "created" and o.document_id is not None
    ]
    found = near_copies_mark(organisation=organisation, documents=created, now=now, prints=prints)
    if not found:
        return
    for outcome in result.outcomes:
        if outcome.status == "created" and outcome.document_id in found:
            outcome.status, outcome.copy, outcome.reason = "duplicate", True, "near-identical text"
            outcome.duplicate_of = found[outcome.document_id]
        elif outcome.copy and outcome.duplicate_of in found:
            outcome.duplicate_of = found[outcome.duplicate_of]


def _row(organisation, source, item: DocumentIn, digest: str, now, original: int | None = None) -> Document:
    return Document(
        organisation=organisation,
        source=source,
        client_id=item.client_id,
        url=item.url,
        title=item.title,
        text=item.text,
        author=item.author,
        language=item.language,
        published_at=item.published_at,
        received_at=now,
        occurred_at=item.published_at if item.published_at and item.published_at <= now else now,
        text_hash=digest,
        duplicate_of_id=original,
    )


def _stored(organisation, rows) -> dict[str, dict[str, Any]]:
    """The stored documents holding the items' client ids and urls (any), and their texts (originals)."""
    clients = [item.client_id for _, item, _ in rows if item.client_id]
    urls = [item.url for _, item, _ in rows if item.url]
    hashes = [digest for _, _, digest in rows]
    found = list(
        Document.objects.for_org(organisation)
        .filter(
            Q(text_hash__in=hashes, duplicate_of__isnull=True) | Q(url__in=urls) | Q(client_id__in=clients)
        )
        .values("id", "client_id", "url", "text_hash", "received_at", "source_id", "duplicate_of_id")
    )
    return {
        "c": {d["client_id"]: d for d in found if d["client_id"]},
        "u": {d["url"]: d for d in found if d["url"]},
        "h": {d["text_hash"]: d for d in found if d["duplicate_of_id"] is None},
    }


def _is_this(row: dict, item: DocumentIn, digest: str, source, now) -> bool:
    """Whether ``row`` is the one this call just inserted for ``item``."""
    return (
        row["text_hash"] == digest
        and row["received_at"] == now
        and row["source_id"] == source.pk
        and row["client_id"] == item.client_id
        and row["url"] == item.url
    )


def _outcome(index, item, digest, stored, source, now) -> Outcome | None:
    """What an item inserted as an original became; None when its text is held by an earlier document."""
    if item.client_id and item.client_id in stored["c"]:
        same = stored["c"][item.client_id]
        if _is_this(same, item, digest, source, now):
            return Outcome(index, "created", document_id=same["id"])
        return Outcome(index, "existing", document_id=same["id"], reason="same client id")
    hit = stored["u"].get(item.url) if item.url else None
    if hit is not None:
        if _is_this(hit, item, digest, source, now):
            return Outcome(index, "created", document_id=hit["id"])
        return Outcome(index, "duplicate", duplicate_of=hit["id"], reason="same url")
    hit = stored["h"].get(digest)
    if hit is not None and _is_this(hit, item, digest, source, now):
        return Outcome(index, "created", document_id=hit["id"])
    if hit is None:  # lost to a concurrent delete: report rather than guess
        return Outcome(index, "rejected", reason="conflicted with a concurrent change; retry")
    return None


def _store_copies(
    organisation, source, copies, originals: dict[str, dict], now
) -> tuple[list[Outcome], list]:
    """Store each copy with ``duplicate_of`` its original, and add them to the originals' ``copies``; the
    copies whose text no stored original holds come back apart (stored as originals by the caller).

    A copy with a client id or url can still meet the unique constraints (a concurrent push of the same
    id): those go in with ``ignore_conflicts`` and are looked up by their keys; the rest cannot conflict
    and go in with their ids returned."""
    outcomes: list[Outcome] = []
    orphans: list[tuple[int, DocumentIn, str]] = []
    keyed: list[tuple[int, DocumentIn, str, int]] = []
    plain: list[tuple[int, int, Document]] = []
    for index, item, digest in copies:
        original = originals.get(digest)
        if original is None:
            orphans.append((index, item, digest))
        elif item.client_id or item.url:
            keyed.append((index, item, digest, original["id"]))
        else:
            plain.append(
                (index, original["id"], _row(organisation, source, item, digest, now, original["id"]))
            )
    made: dict[int, int] = {}  # original -> copies stored now
    Document.all_tenants.bulk_create([row for _, _, row in plain])
    for index, original_id, row in plain:
        outcomes.append(_copy_outcome(index, row.pk, original_id))
        made[original_id] = made.get(original_id, 0) + 1
    if keyed:
        Document.all_tenants.bulk_create(
            [_row(organisation, source, item, digest, now, orig) for _, item, digest, orig in keyed],
            ignore_conflicts=True,
        )
        stored = _stored(organisation, [(i, item, d) for i, item, d, _ in keyed])
        for index, item, digest, original_id in keyed:
            hit = stored["c"].get(item.client_id) if item.client_id else stored["u"].get(item.url)
            if hit is not None and _is_this(hit, item, digest, source, now):
                outcomes.append(_copy_outcome(index, hit["id"], original_id))
                made[original_id] = made.get(original_id, 0) + 1
            elif hit is not None and item.client_id:
                outcomes.append(Outcome(index, "existing", document_id=hit["id"], reason="same client id"))
            elif hit is not None:
                outcomes.append(Outcome(index, "duplicate", duplicate_of=hit["id"], reason="same url"))
            else:
                outcomes.append(
                    Outcome(index, "rejected", reason="conflicted with a concurrent change; retry")
                )
    by_count: dict[int, list[int]] = {}  # one UPDATE per distinct number of new copies (mostly one)
    for original_id, n in made.items():
        by_count.setdefault(n, []).append(original_id)
    for n, ids in sorted(by_count.items()):
        Document.objects.for_org(organisation).filter(pk__in=sorted(ids)).update(copies=F("copies") + n)
    return outcomes, orphans


def _copy_outcome(index: int, document_id: int, original_id: int) -> Outcome:
    return Outcome(
        index, "duplicate", document_id=document_id, duplicate_of=original_id, reason="same text", copy=True
    )


def document_in_from_mapping(row: dict[str, Any], *, parse_time) -> DocumentIn:
    """A DocumentIn from an uploaded row (strings); ``parse_time`` raises ValueError on a bad date."""
    published = (row.get("published_at") or "").strip()
    return DocumentIn(
        text=(row.get("text") or "").strip(),
        title=(row.get("title") or "").strip(),
        url=(row.get("url") or "").strip(),
        author=(row.get("author") or "").strip(),
        language=(row.get("language") or "").strip(),
        published_at=parse_time(published) if published else None,
        client_id=(row.get("id") or row.get("client_id") or "").strip(),
    )
