"""Near copies: a new original whose text is near-identical to an earlier original of the organisation
becomes that original's copy, as an exact copy does (``services.documents``: stored, listed, counted as
ingested; never tagged, classified, counted in the trends or taken as an alert's evidence).

The rule is ``finance_monitor.near_duplicates`` (MinHash LSH bands, a Jaccard confirmation, the same numbers,
cashtags, @mentions and negations). This module owns its index: one ``DocumentBand`` row per band of each
original, written in the ingest's transaction (no orphan bands: a rolled back call leaves none), and looked
up by band hash within the organisation and ``FM_NEAR_DUPLICATE_WINDOW_DAYS``. ``documents_ingest`` calls it,
inside its transaction, with the originals it has just stored, in push order: the second of two near copies
in one batch is the first one's copy. Another organisation's documents are never candidates.

Documents stored before the index existed, or while ``FM_NEAR_DUPLICATES`` was off, have no bands and are
never found; their exact copies still are. Bands older than the window are never looked up again:
``near_copy_bands_prune`` (the daily task ``finance_monitor.prune_near_copy_bands``) deletes them, so the
index stays the window's size (a window made longer later finds only what is younger than the old one).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from finance_monitor import near_duplicates as near
from finance_monitor.models import Document, DocumentBand


def near_copies_mark(*, organisation, documents: list[tuple[int, str]], now: datetime) -> dict[int, int]:
    """``documents``: (id, unwrapped text) of the originals this transaction has just stored, in push order.
    Each near copy of an original in the window (or of an earlier one of these) becomes its copy; the bands
    of the rest are recorded. Returns {copy's id: its original's id}."""
    if not settings.FM_NEAR_DUPLICATES or not documents:
        return {}
    prints = {doc_id: near.fingerprint(text) for doc_id, text in documents}
    since = now - timedelta(days=settings.FM_NEAR_DUPLICATE_WINDOW_DAYS)
    known, index = _candidates(organisation, [fp for fp in prints.values() if fp is not None], since)
    found: dict[int, int] = {}
    bands: list[DocumentBand] = []
    for doc_id, fp in prints.items():
        if fp is None:  # too short to judge: an original, with no bands
            continue
        original = _best(fp, {i for h in fp.bands for i in index.get(h, ())}, known)
        if original is not None:
            found[doc_id] = original
            continue
        known[doc_id] = fp
        for band, value in enumerate(fp.bands):
            index.setdefault(value, []).append(doc_id)
            bands.append(DocumentBand(organisation=organisation, document_id=doc_id, band=band, hash=value))
    DocumentBand.all_tenants.bulk_create(bands)
    _make_copies(organisation, found)
    return found


def _candidates(
    organisation, prints: list[near.Fingerprint], since: datetime
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
    known = {doc_id: near.fingerprint(near.unwrap_text(text)) for doc_id, text in texts}
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
