"""Accepting documents: validation, de-duplication and idempotency, one or a batch of up to 1,000.

De-duplication is done by PostgreSQL, atomically, with three partial unique constraints per organisation:
the client's id (a re-push returns the stored document), the url, and the sha256 of the *normalised* text
(lower case, Unicode NFKC, links, ``RT @user:`` prefixes, punctuation and runs of white space removed).
The normalised hash catches what duplicates look like in news and social feeds (the same wire story with
other tracking links, a retweet, re-spaced or re-punctuated copies) at O(1) per document and under
concurrency, with no scan. MinHash over shingles would also catch reworded copies but needs LSH tables and a
threshold to tune; semantic near-duplicates will come from the core vector index once it lands.

Metering: every document accepted (``created``; not an ``existing`` re-push, a ``duplicate`` or a rejected
item) counts one on the ``documents_ingested`` meter, in the transaction that stores it. A call that would
pass the plan's monthly limit is refused whole (QuotaExceeded, HTTP 402 naming the meter, the limit and what
remains) and stores nothing: a batch is all or nothing, and so is an upload or a feed poll (their callers
wrap every batch of the file or feed in one transaction). Accepted documents queue their classification
(``services.classification``) after commit.
"""

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.billing import services as billing
from core.errors import InvalidInput
from finance_monitor.models import Document, Source, SourceKind
from finance_monitor.services.classification import classify_enqueue
from finance_monitor.services.entities import documents_tag

METER = "documents_ingested"
MAX_BATCH = 1000
MAX_TEXT_CHARS = 20_000
MAX_TITLE_CHARS = 500
FUTURE_TOLERANCE = timedelta(minutes=10)  # clocks drift; a date further ahead is refused

_LINK = re.compile(r"https?://\S+|www\.\S+")
_RETWEET = re.compile(r"^\s*rt\s+@\w+:?\s*")
_MENTION = re.compile(r"@\w+")
_NON_WORD = re.compile(r"[\W_]+")


def normalise_text(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _RETWEET.sub("", text)
    text = _LINK.sub(" ", text)
    text = _MENTION.sub(" ", text)
    return _NON_WORD.sub(" ", text).strip()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode()).hexdigest()


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
    """What became of one pushed document: ``created``, ``existing`` (same client id), or ``duplicate``."""

    index: int
    status: str
    document_id: int | None = None
    duplicate_of: int | None = None
    reason: str = ""


@dataclass
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def created(self) -> list[int]:
        return [o.document_id for o in self.outcomes if o.status == "created" and o.document_id]

    def counts(self) -> dict[str, int]:
        out = {"created": 0, "existing": 0, "duplicate": 0, "rejected": 0}
        for o in self.outcomes:
            out[o.status] += 1
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
    if item.published_at is not None:
        if timezone.is_naive(item.published_at):
            return "published_at needs a time zone"
        if item.published_at > now + FUTURE_TOLERANCE:
            return "published_at is in the future"
    return ""


def source_for(*, organisation, kind: str, name: str) -> Source:
    """The organisation's source of that name (created on first use for pushes and uploads)."""
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
    with transaction.atomic():
        result.outcomes.extend(_store(organisation, source, pending, now))
        result.outcomes.sort(key=lambda o: o.index)
        created = result.created
        if created:
            # over the quota this raises QuotaExceeded (402) and the transaction keeps nothing of the call
            billing.usage_record(
                organisation=organisation,
                meter=METER,
                quantity=len(created),
                metadata={"source": source.pk, "documents": [created[0], created[-1]]},
            )
            latest = max(now, source.last_document_at or now)
            Source.objects.for_org(organisation).filter(pk=source.pk).update(last_document_at=latest)
            documents_tag(organisation=organisation, document_ids=created)
            classify_enqueue(organisation_id=organisation.pk)
    return result


def _store(organisation, source, pending, now) -> list[Outcome]:
    """Insert in one statement, letting the unique constraints decide; then say what each item became."""
    if not pending:
        return []
    docs = Document.objects.for_org(organisation)
    outcomes: list[Outcome] = []
    seen: dict[str, int] = {}  # key -> index of the first item in this batch holding it
    rows: list[tuple[int, DocumentIn, str]] = []
    for index, item, digest in pending:
        keys = [f"h:{digest}"] + ([f"u:{item.url}"] if item.url else [])
        keys += [f"c:{item.client_id}"] if item.client_id else []
        first = next((seen[k] for k in keys if k in seen), None)
        if first is not None:
            outcomes.append(Outcome(index, "duplicate", reason=f"same as item {first} of this batch"))
            continue
        seen.update({k: index for k in keys})
        rows.append((index, item, digest))
    with transaction.atomic():
        Document.all_tenants.bulk_create(
            [
                Document(
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
                )
                for _, item, digest in rows
            ],
            ignore_conflicts=True,
        )
    clients = [item.client_id for _, item, _ in rows if item.client_id]
    urls = [item.url for _, item, _ in rows if item.url]
    hashes = [digest for _, _, digest in rows]
    stored = list(
        docs.filter(Q(text_hash__in=hashes) | Q(url__in=urls) | Q(client_id__in=clients)).values(
            "id", "client_id", "url", "text_hash", "received_at", "source_id"
        )
    )
    by_client = {d["client_id"]: d for d in stored if d["client_id"]}
    by_url = {d["url"]: d for d in stored if d["url"]}
    by_hash = {d["text_hash"]: d for d in stored}
    for index, item, digest in rows:
        if item.client_id and item.client_id in by_client:
            same = by_client[item.client_id]
            if same["text_hash"] == digest and same["received_at"] == now and same["source_id"] == source.pk:
                outcomes.append(Outcome(index, "created", document_id=same["id"]))
            else:
                outcomes.append(Outcome(index, "existing", document_id=same["id"], reason="same client id"))
            continue
        hit = by_url.get(item.url) if item.url else None
        if hit is not None:
            reason = "same url"
        else:
            hit, reason = by_hash.get(digest), "same text"
        if hit is None:  # lost to a concurrent delete: report rather than guess
            outcomes.append(Outcome(index, "rejected", reason="conflicted with a concurrent change; retry"))
        elif (
            hit["text_hash"] == digest
            and hit["received_at"] == now
            and hit["client_id"] == item.client_id
            and hit["url"] == item.url
        ):
            outcomes.append(Outcome(index, "created", document_id=hit["id"]))
        else:
            outcomes.append(Outcome(index, "duplicate", duplicate_of=hit["id"], reason=reason))
    return outcomes


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
