"""Near copies: a new original whose text is near-identical to an earlier original of the organisation
becomes that original's copy, as an exact copy does (``services.documents``: stored, listed, counted as
ingested; never tagged, classified, counted in the trends or taken as an alert's evidence).

The rule is ``finance_monitor.near_duplicates`` (MinHash LSH bands, a Jaccard confirmation, the same numbers,
cashtags, @mentions, negations and watch-list entries, no name swapped for another); this module gives it the
organisation's watch-list (``services.entities.tag``: the entries each text mentions must be the same). This
module owns its index: one ``DocumentBand`` row per band of each original, written in the ingest's transaction
(no orphan bands: a rolled back call leaves none), and looked up by band hash within the organisation and
``FM_NEAR_DUPLICATE_WINDOW_DAYS``. ``documents_ingest`` calls it, inside its transaction, with the originals
it has just stored, in push order: the second of two near copies in one batch is the first one's copy. Another
organisation's documents are never candidates.

Concurrency (PostgreSQL): two workers storing near copies of each other at once would not see each other's
uncommitted bands, so ``near_copies_lock`` takes transaction-scoped advisory locks before the documents are
inserted: one per (organisation, band hash) of the new texts, in sorted order (no deadlock between two such
calls), with the organisation's lock in shared mode. Two texts sharing a band (every near copy pair: the
lookup needs a shared band) wait for each other, and the second one's lookup sees the first one's committed
bands; texts with no band in common never wait. A call with more than ``FINE_LOCKS_MAX`` band hashes, or one
inside a caller's transaction (an upload or a feed poll: several calls in one transaction, whose later locks
could not be taken in order), takes the organisation's lock in exclusive mode instead: that call and the rest
of its transaction run alone among the organisation's ingests of texts with bands. SQLite (the embedded
default) has one writer at a time, and a transaction's first statement is the documents' insert, so it needs
no lock.

Documents stored before the index existed, or while ``FM_NEAR_DUPLICATES`` was off, have no bands: until
``near_copy_bands_backfill`` (the command ``manage.py near_copy_backfill``, the task
``finance_monitor.backfill_near_copy_bands``) writes them, they are never found; their exact copies still are.

Bands older than the window are never looked up again:
``near_copy_bands_prune`` (the daily task ``finance_monitor.prune_near_copy_bands``) deletes them, so the
index stays the window's size (a window made longer later finds only what is younger than the old one).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Subquery
from django.utils import timezone

from core import statements
from core.celery import app as celery_app
from core.jobs.queues import Queue
from core.tenancy.models import Organisation
from finance_monitor import near_duplicates as near
from finance_monitor.models import Document, DocumentBand, Entity
from finance_monitor.services import entities

# band hashes (16 documents' worth) a call locks one by one; more lock the organisation: each lock is an
# entry in PostgreSQL's shared lock table (max_locks_per_transaction x connections, 6,400 by default)
FINE_LOCKS_MAX = 256
_LOCK_NAMESPACE = b"finance_monitor.near_copies"


def near_copies_fingerprint(*, organisation, texts: Iterable[str]) -> dict[str, near.Fingerprint | None]:
    """text -> its fingerprint (None: too short), for the texts a call is about to store, with the
    organisation's watch-list entries each mentions among its anchors; empty when the rule is off."""
    if not settings.FM_NEAR_DUPLICATES:
        return {}
    watch = _watch_list(organisation)
    return {text: _fingerprint(text, watch) for text in texts}


def _watch_list(organisation) -> list[entities.EntitySpec]:
    return [entities.spec(e) for e in Entity.objects.for_org(organisation)]


def _fingerprint(text: str, watch: list[entities.EntitySpec]) -> near.Fingerprint | None:
    """The rule's fingerprint of a stored or pushed text: unwrapped, with the watch-list entries it mentions
    (``services.entities.tag``, the tagging that counts a document in an entry's trend)."""
    mentioned = [str(key) for key, _ in entities.tag(text, watch)] if watch else []
    return near.fingerprint(near.unwrap_text(text), entities=mentioned)


def near_copies_lock(*, organisation, prints: Iterable[near.Fingerprint | None], alone: bool) -> None:
    """On PostgreSQL, inside the ingest's transaction and before its inserts: the advisory locks that make
    two concurrent near copies one original and its copy (module docstring). ``alone``: the call owns its
    transaction (no caller's ``atomic`` around it), so it takes no other lock after these."""
    if connection.vendor != "postgresql":
        return
    hashes = {h for fp in prints if fp is not None for h in fp.bands}
    if not hashes:
        return
    whole = _lock_key(organisation.pk)
    with connection.cursor() as cursor:
        if not alone or len(hashes) > FINE_LOCKS_MAX:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [whole])
            return
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [whole])
        keys = sorted({_lock_key(organisation.pk, h) for h in hashes})
        # unnest returns the array in its order: the locks are taken in ascending order
        cursor.execute("SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", [keys])


def _lock_key(organisation_id: int, band_hash: int | None = None) -> int:
    """A signed 64-bit advisory lock key for the organisation (``band_hash`` None) or one of its band hashes;
    a collision only makes two calls wait for each other."""
    data = _LOCK_NAMESPACE + organisation_id.to_bytes(8, "little", signed=True)
    if band_hash is not None:
        data += band_hash.to_bytes(8, "little", signed=True)
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)


def near_copies_mark(
    *,
    organisation,
    documents: list[tuple[int, str]],
    now: datetime,
    prints: dict[str, near.Fingerprint | None] | None = None,
) -> dict[int, int]:
    """``documents``: (id, text) of the originals this transaction has just stored, in push order;
    ``prints``: the texts' fingerprints when the caller has them (``near_copies_fingerprint``).
    Each near copy of an original in the window (or of an earlier one of these) becomes its copy; the bands
    of the rest are recorded. Returns {copy's id: its original's id}."""
    if not settings.FM_NEAR_DUPLICATES or not documents:
        return {}
    watch = _watch_list(organisation)
    known_prints = prints or {}
    prints_by_id = {
        doc_id: known_prints[text] if text in known_prints else _fingerprint(text, watch)
        for doc_id, text in documents
    }
    since = now - timedelta(days=settings.FM_NEAR_DUPLICATE_WINDOW_DAYS)
    new = [fp for fp in prints_by_id.values() if fp is not None]
    known, index = _candidates(organisation, new, since, watch)
    found: dict[int, int] = {}
    bands: list[tuple[int, int, int]] = []
    for doc_id, fp in prints_by_id.items():
        if fp is None:  # too short to judge: an original, with no bands
            continue
        original = _best(fp, {i for h in fp.bands for i in index.get(h, ())}, known)
        if original is not None:
            found[doc_id] = original
            continue
        known[doc_id] = fp
        for band, value in enumerate(fp.bands):
            index.setdefault(value, []).append(doc_id)
            bands.append((doc_id, band, value))
    _bands_store(organisation, bands)
    _make_copies(organisation, found)
    return found


def _bands_store(organisation, bands: list[tuple[int, int, int]]) -> None:
    """Store (document id, band, hash) rows of ``organisation``, created now. On PostgreSQL in ONE
    ``INSERT ... SELECT`` from three arrays: an original has 16 bands, and ``bulk_create`` built a model and
    prepared five values for each row, a quarter of the CPU of accepting a pushed batch (BENCHMARKS.md
    section 16, twelfth-session addendum). Elsewhere ``bulk_create``."""
    if not bands:
        return
    if connection.vendor != "postgresql":
        DocumentBand.all_tenants.bulk_create(
            DocumentBand(organisation=organisation, document_id=doc_id, band=band, hash=value)
            for doc_id, band, value in bands
        )
        return
    doc_ids, numbers, hashes = (list(column) for column in zip(*bands, strict=True))
    columns = ", ".join(
        statements.column(DocumentBand, name)
        for name in ("organisation", "document", "band", "hash", "created_at")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {statements.table(DocumentBand)} ({columns})"  # noqa: S608 - model metadata
            " SELECT %s, d, b, h, %s FROM unnest(%s::bigint[], %s::smallint[], %s::bigint[]) AS u (d, b, h)",
            [organisation.pk, timezone.now(), doc_ids, numbers, hashes],
        )


def _candidates(
    organisation, prints: list[near.Fingerprint], since: datetime, watch: list[entities.EntitySpec]
) -> tuple[dict[int, near.Fingerprint], dict[int, list[int]]]:
    """The organisation's originals in the window sharing a band with ``prints``: their fingerprints, and
    band hash -> their ids."""
    hashes = sorted({h for fp in prints for h in fp.bands})
    if not hashes:
        return {}, {}
    rows = (
        DocumentBand.objects.for_org(organisation)
        .filter(hash__in=hashes, created_at__gte=since)
        .values_list("hash", "document_id")
    )
    index: dict[int, list[int]] = {}
    for value, doc_id in rows:
        index.setdefault(value, []).append(doc_id)
    ids = sorted({i for ids in index.values() for i in ids})
    # only originals have bands, and stay originals; the filter is a guard, not a join in the band lookup
    texts = (
        Document.objects.for_org(organisation)
        .filter(pk__in=ids, duplicate_of__isnull=True)
        .values_list("id", "text")
    )
    known = {doc_id: _fingerprint(text, watch) for doc_id, text in texts}
    return {k: fp for k, fp in known.items() if fp is not None}, index


def _best(fp: near.Fingerprint, candidates: Iterable[int], known: dict[int, near.Fingerprint]) -> int | None:
    """The confirmed candidate with the highest Jaccard (the earliest on a tie), or None."""
    best: tuple[float, int] | None = None
    for doc_id in candidates:
        other = known.get(doc_id)
        if other is None or not near.is_near_copy(fp, other):
            continue
        key = (-near.jaccard(fp.shingles, other.shingles), doc_id)
        if best is None or key < best:
            best = key
    return None if best is None else best[1]


def _make_copies(organisation, found: dict[int, int]) -> None:
    """Each found document becomes its original's copy; the exact copies this call stored of it follow it to
    that original, whose ``copies`` counts them all. A few statements whatever the number of copies."""
    if not found:
        return
    docs = Document.objects.for_org(organisation)
    had = dict(docs.filter(pk__in=sorted(found), copies__gt=0).values_list("id", "copies"))
    for doc_id in sorted(had):  # rare: a batch held a near copy and an exact copy of it
        docs.filter(duplicate_of_id=doc_id).update(duplicate_of_id=found[doc_id])
    Document.all_tenants.bulk_update(
        [Document(pk=doc_id, duplicate_of_id=orig, copies=0) for doc_id, orig in sorted(found.items())],
        ["duplicate_of", "copies"],
        batch_size=500,
    )
    added: dict[int, int] = {}
    for doc_id, original in found.items():
        added[original] = added.get(original, 0) + 1 + had.get(doc_id, 0)
    by_count: dict[int, list[int]] = {}  # one UPDATE per distinct number of new copies (mostly one)
    for original, n in added.items():
        by_count.setdefault(n, []).append(original)
    for n, ids in sorted(by_count.items()):
        docs.filter(pk__in=sorted(ids)).update(copies=F("copies") + n)


def near_copy_bands_prune(*, now: datetime | None = None, batch: int = 10_000) -> int:
    """Delete every organisation's bands older than ``FM_NEAR_DUPLICATE_WINDOW_DAYS``, ``batch`` rows per
    statement (short locks beside a running ingest); returns how many."""
    cut = (now or timezone.now()) - timedelta(days=settings.FM_NEAR_DUPLICATE_WINDOW_DAYS)
    old = DocumentBand.all_tenants.filter(created_at__lt=cut).order_by()
    deleted = 0
    while ids := list(old.values_list("id", flat=True)[:batch]):
        deleted += DocumentBand.all_tenants.filter(id__in=ids).delete()[0]
    return deleted


def near_copy_bands_backfill(
    *, organisation=None, now: datetime | None = None, batch: int = 500
) -> dict[str, int]:
    """Write the bands of the originals received in the last ``FM_NEAR_DUPLICATE_WINDOW_DAYS`` that have none
    (stored before migration 0009 or while ``FM_NEAR_DUPLICATES`` was off), of ``organisation`` or of every
    live organisation, ``batch`` documents per transaction. Idempotent: a document with bands is skipped, so
    a second run (or one cut short and run again) writes only what is missing. Each band is dated with its
    document's ``received_at``, so it leaves the window (and is pruned) when the document would have.

    Returns {"documents": banded, "bands": written, "short": too short to have bands (left without)}. With the
    rule off it writes nothing: the ingest would not look the bands up."""
    counts = {"documents": 0, "bands": 0, "short": 0}
    if not settings.FM_NEAR_DUPLICATES:
        return counts
    since = (now or timezone.now()) - timedelta(days=settings.FM_NEAR_DUPLICATE_WINDOW_DAYS)
    for org in _organisations_to_backfill(organisation, since):
        last = 0
        todo = _originals_without_bands(org).filter(received_at__gte=since).values_list("id", "text")
        while rows := list(todo.filter(pk__gt=last).order_by("pk")[:batch]):
            last = rows[-1][0]
            for key, n in _backfill_batch(org, rows).items():
                counts[key] += n
    return counts


BACKFILL_TASK = "finance_monitor.backfill_near_copy_bands"


def near_copy_bands_backfill_enqueue(*, organisation=None) -> str:
    """Queue ``near_copy_bands_backfill`` (one organisation, or all) on the ``default`` queue after commit;
    returns the task's id."""
    task_id = uuid.uuid4().hex
    args = [organisation.pk if organisation is not None else None]
    transaction.on_commit(
        lambda: celery_app.send_task(BACKFILL_TASK, args=args, queue=Queue.DEFAULT, task_id=task_id)
    )
    return task_id


def _organisations_to_backfill(organisation, since: datetime) -> list:
    if organisation is not None:
        return [organisation]
    with_documents = Document.all_tenants.filter(received_at__gte=since, duplicate_of__isnull=True)
    return list(
        Organisation.objects.filter(deleted_at__isnull=True)
        .filter(Exists(with_documents.filter(organisation_id=OuterRef("pk"))))
        .order_by("pk")
    )


def _originals_without_bands(organisation):
    banded = DocumentBand.objects.for_org(organisation).filter(document_id=OuterRef("pk"))
    return Document.objects.for_org(organisation).filter(~Exists(banded), duplicate_of__isnull=True)


def _backfill_batch(organisation, rows: list[tuple[int, str]]) -> dict[str, int]:
    """One transaction: the same locks as an ingest (a near copy pushed meanwhile waits and then finds these
    bands), the documents checked again (another backfill may have banded them, or a concurrent change made
    one a copy), then their bands."""
    every = {
        doc_id: near.fingerprint(near.unwrap_text(text)) for doc_id, text in rows
    }  # bands: no watch-list
    prints = {doc_id: fp for doc_id, fp in every.items() if fp is not None}
    alone = not transaction.get_connection().in_atomic_block
    with transaction.atomic():
        near_copies_lock(organisation=organisation, prints=prints.values(), alone=alone)
        still = set(
            _originals_without_bands(organisation).filter(pk__in=sorted(prints)).values_list("id", flat=True)
        )
        bands = [
            DocumentBand(organisation=organisation, document_id=doc_id, band=band, hash=value)
            for doc_id in sorted(still)
            for band, value in enumerate(prints[doc_id].bands)
        ]
        DocumentBand.all_tenants.bulk_create(bands, batch_size=2000)
        received = Document.all_tenants.filter(pk=OuterRef("document_id")).values("received_at")[:1]
        DocumentBand.objects.for_org(organisation).filter(document_id__in=sorted(still)).update(
            created_at=Subquery(received)
        )
    return {"documents": len(still), "bands": len(bands), "short": len(every) - len(prints)}
