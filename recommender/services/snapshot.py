"""The catalogue as serving reads it, held in memory once per process and organisation (a snapshot).

What a request needs of the catalogue (which items may be served now, their title, categories and price, their
text vectors and the vector index over them) does not change between two catalogue writes, so serving reads
it from here instead of querying the item table per request: filters become numpy masks over cached arrays,
``why`` and the answer's titles are lookups, and the text neighbours come from an index built once.

Freshness: every write that changes the catalogue (``catalogue.items_upsert``/``items_upload``, the embedding
job) calls ``catalogue_changed`` in its transaction, which adds one to the organisation's
``RecommenderSettings.catalogue_version`` and bumps the organisation's serving generation; a request reads
that number with the organisation's settings (``serving.serving_state``: cached per process until the bump). A
snapshot of an older number is rebuilt off the request path: the request gets the stale snapshot at once, and
one thread per process and organisation builds the new one and swaps it in when done (a build takes 2-3
minutes at a million items). Serving checks what it picks from a stale snapshot against the item table
(``serving._pick_live``), so an item deleted, made unavailable or expired since is never served; items added
since are served once the new snapshot is in. The first snapshot of an organisation in a process is built in
the request (there is nothing to serve meanwhile), and so is one asked with ``wait`` or from inside a
transaction (its writes are not visible to another connection). Expiry (``expires_at``) is a time, compared at
each request.

Vectors: each row keeps the reference of the model that made its vector; the index over the rows of one
model is ``core.ml.vector_index.VectorIndex`` (exact numpy top-k below ``VECTOR_ANN_MIN_VECTORS``, faiss IVF
at or above it, as ``core.vectors`` builds it), built on first use and kept with the snapshot. Memory: about
1.6 KB per item with a 384-dim vector (2x above the ANN size: IVF-Flat keeps its own copy); the last
``CACHE_SIZE`` organisations' snapshots are kept, and while one is rebuilt its old copy stays until the swap.
"""

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection, connections
from django.db.models import F

from core.ml.vector_index import ANN_MIN_VECTORS, VectorIndex
from recommender.models import Item, RecommenderSettings
from recommender.services.generation import serving_changed

CACHE_SIZE = 8  # organisations whose catalogue snapshot a process keeps
# Called with (organisation id, version) by every build before it reads the items, in the building thread:
# where tests and benchmarks observe (or hold) a build.
BUILD_HOOKS: list[Callable[[int, int], None]] = []

logger = logging.getLogger(__name__)


def catalogue_changed(*, organisation) -> None:
    """Call inside the transaction that changes the organisation's items: snapshots of the old catalogue
    are rebuilt by the next request of every process once it commits."""
    serving_changed(organisation=organisation)  # the cached settings hold the catalogue version
    updated = RecommenderSettings.all_tenants.filter(organisation=organisation).update(
        catalogue_version=F("catalogue_version") + 1
    )
    if not updated:
        RecommenderSettings.all_tenants.get_or_create(
            organisation=organisation, defaults={"catalogue_version": 1}
        )


def catalogue_version(organisation) -> int:
    return (
        RecommenderSettings.objects.for_org(organisation).values_list("catalogue_version", flat=True).first()
        or 0
    )


@dataclass
class Snapshot:
    """The organisation's live (not deleted) items, one row each, in arrays."""

    version: int
    ids: list[str]
    row: dict[str, int]
    titles: list[str]
    categories: list[list[str]]
    prices: list[str | None]  # as the answer shows them
    price: np.ndarray  # (n,) float64, NaN without a price
    available: np.ndarray  # (n,) bool
    expires: np.ndarray  # (n,) float64 unix time, inf without one
    embedder: np.ndarray  # (n,) int: position in ``models``, -1 without a vector
    models: list[str]
    vectors: np.ndarray  # (n, dim) float32; zero rows without a vector
    # category -> its rows (int32, ascending), read once at the build: a mask is made from them, not from a
    # pass over every item's categories (37 ms at 1,000,000 items, on the request that first names one)
    category_rows: dict[str, np.ndarray] = field(default_factory=dict)
    in_category: dict[str, np.ndarray] = field(default_factory=dict)  # category -> (n,) bool, built on demand
    indexes: dict[str, tuple[np.ndarray, VectorIndex]] = field(default_factory=dict)  # model -> rows, index
    known: tuple = (None, None)  # the last model whose items were looked up here, and their rows
    known_positions: tuple = (None, None)  # the last model asked, each row's index in its items (-1: none)
    # per (key, model) asked of ``kept``: what a caller derived once from this catalogue and that model
    derived: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        return len(self.ids)

    def rows_of(self, external_ids) -> np.ndarray:
        """The rows of those ids (-1 for ids not in the catalogue)."""
        get = self.row.get
        return np.fromiter((get(i, -1) for i in external_ids), dtype=np.int64)

    def model_rows(self, model) -> np.ndarray:
        """The rows of ``model.items`` (-1 for items not in the catalogue any more), kept for the last model
        asked (a model serves many requests between two catalogue changes)."""
        last, rows = self.known
        if last is not model:
            rows = self.rows_of(model.items)
            self.known = (model, rows)
        return rows

    def model_positions(self, model) -> np.ndarray:
        """(n,) int64: each row's index in ``model.items`` (-1 for rows the model does not know), the inverse
        of ``model_rows``, kept for the last model asked."""
        last, positions = self.known_positions
        if last is not model:
            rows = self.model_rows(model)
            positions = np.full(len(self.ids), -1, dtype=np.int64)
            inside = rows >= 0
            positions[rows[inside]] = np.flatnonzero(inside)
            self.known_positions = (model, positions)
        return positions

    def kept(self, key, model, make: Callable[[], Any]) -> Any:
        """``make()``, made once per ``key`` and ``model`` for this catalogue (a few dozen entries kept): what
        serving derives from the items and a model's fixed scores, such as a category's items in order."""
        found = self.derived.get((key, id(model)))
        if found is None or found[0] is not model:  # the model object kept: its id is not reused meanwhile
            found = (model, make())
            if len(self.derived) >= 64:
                self.derived.clear()
            self.derived[(key, id(model))] = found
        return found[1]

    def text_all_known(self, model, text_model: str) -> bool:
        """Whether every item with a ``text_model`` vector is one of ``model``'s items (``model.index``),
        kept per pair asked (``kept``): a model that scores its whole catalogue then gets nothing from the
        text neighbours (they only add the items it does not know)."""

        def all_known() -> bool:
            _rows, index = self.index(text_model)
            return all(key in model.index for key in index.keys)

        return self.kept(("text all known", text_model), model, all_known)

    def servable(
        self, rows: np.ndarray, *, now: float, category, min_price, max_price, available_only
    ) -> np.ndarray:
        """(len(rows),) bool: the rows that may be served now within the filters (-1 rows never)."""
        ok = rows >= 0
        safe = np.where(ok, rows, 0)
        ok &= self.expires[safe] > now
        if available_only:
            ok &= self.available[safe]
        if min_price is not None:
            ok &= self.price[safe] >= float(min_price)  # NaN (no price) compares false: left out, as in SQL
        if max_price is not None:
            ok &= self.price[safe] <= float(max_price)
        if category:
            ok &= self.category_mask(category)[safe]
        return ok

    def category_mask(self, category: str) -> np.ndarray:
        mask = self.in_category.get(category)
        if mask is None:
            mask = np.zeros(len(self.ids), dtype=bool)
            rows = self.category_rows.get(category)
            if rows is not None:
                mask[rows] = True
            self.in_category[category] = mask
        return mask

    def has_vectors(self) -> bool:
        return bool(self.models)

    def vector_of(self, external_id: str, model: str) -> np.ndarray | None:
        r = self.row.get(external_id)
        if r is None or self.embedder[r] < 0 or self.models[self.embedder[r]] != model:
            return None
        return self.vectors[r]

    def vectors_of(self, external_ids, model: str) -> tuple[list[str], np.ndarray]:
        """``vector_of`` for many ids at once: those with a vector of ``model`` (in order) and their vectors
        (one row each; a user's history of 500 items is not looked up item by item)."""
        row = self.row
        ids = [i for i in external_ids if i in row]
        rows = np.fromiter((row[i] for i in ids), dtype=np.int64, count=len(ids))
        ok = self.embedder[rows] == self._code(model)
        return [i for i, good in zip(ids, ok.tolist(), strict=True) if good], self.vectors[rows[ok]]

    def _code(self, model: str) -> int:
        """``model``'s code in ``embedder`` (-2, which no row has, for a model no row was embedded with)."""
        return self.models.index(model) if model in self.models else -2

    def stale(self, model: str) -> bool:
        """Whether some rows carry a vector of another model than ``model``."""
        return any(m != model for m in self.models)

    def index(self, model: str) -> tuple[np.ndarray, VectorIndex]:
        """The rows with a vector of ``model`` and the index over them (built once)."""
        with self.lock:
            found = self.indexes.get(model)
            if found is None:
                rows = np.flatnonzero(self.embedder == self._code(model))
                ann_min = int(getattr(settings, "VECTOR_ANN_MIN_VECTORS", ANN_MIN_VECTORS))
                found = (
                    rows,
                    VectorIndex([self.ids[r] for r in rows.tolist()], self.vectors[rows], ann_min=ann_min),
                )
                self.indexes[model] = found
            return found


def _unix(when: datetime | None) -> float:
    return np.inf if when is None else when.timestamp()


def _build(organisation, version: int) -> Snapshot:
    for hook in list(BUILD_HOOKS):
        hook(organisation.pk, version)
    rows = (
        Item.objects.for_org(organisation)
        .filter(deleted=False)
        .order_by("pk")
        .values_list(
            "external_id", "title", "categories", "price", "available", "expires_at", "vector", "embedder"
        )
    )
    ids, titles, categories, prices, price, available, expires, codes = [], [], [], [], [], [], [], []
    models: dict[str, int] = {}
    chunks: list[tuple[int, bytes]] = []
    in_category: dict[str, list[int]] = {}
    for n, (key, title, cats, amount, avail, expires_at, vector, embedder) in enumerate(
        rows.iterator(chunk_size=5000)
    ):
        ids.append(key)
        titles.append(title)
        categories.append(list(cats or []))
        for category in set(cats or ()):
            in_category.setdefault(category, []).append(n)
        prices.append(None if amount is None else str(amount))
        price.append(np.nan if amount is None else float(amount))
        available.append(avail)
        expires.append(_unix(expires_at))
        if vector is not None and embedder:
            codes.append(models.setdefault(embedder, len(models)))
            chunks.append((n, bytes(vector)))
        else:
            codes.append(-1)
    dim = len(chunks[0][1]) // 4 if chunks else 1
    matrix = np.zeros((len(ids), dim), dtype=np.float32)
    for n, raw in chunks:
        if len(raw) == 4 * dim:
            matrix[n] = np.frombuffer(raw, dtype=np.float32)
        else:
            codes[n] = -1  # a vector of another size cannot share the index
    return Snapshot(
        version=version,
        ids=ids,
        row={key: n for n, key in enumerate(ids)},
        titles=titles,
        categories=categories,
        prices=prices,
        price=np.asarray(price, dtype=np.float64),
        available=np.asarray(available, dtype=bool),
        expires=np.asarray(expires, dtype=np.float64),
        embedder=np.asarray(codes, dtype=np.int64),
        models=list(models),
        vectors=matrix,
        category_rows={c: np.asarray(rows, dtype=np.int32) for c, rows in in_category.items()},
    )


_cache: OrderedDict[int, Snapshot] = OrderedDict()
_cache_lock = threading.Lock()
_build_locks: dict[int, threading.Lock] = {}
_rebuilding: dict[int, threading.Thread] = {}  # organisation id -> the thread building its next snapshot


def snapshot_cached(organisation) -> bool:
    """Whether this process holds a snapshot of the organisation's catalogue (of any version: an older one
    serves while the new one builds), so a request reads it without building one first."""
    with _cache_lock:
        return organisation.pk in _cache


def catalogue_snapshot(*, organisation, version: int, wait: bool = False) -> Snapshot:
    """The organisation's snapshot for ``version`` (its settings' ``catalogue_version``): the cached one when
    it is that version or newer; an older cached one while a background thread builds the new one (the caller
    sees ``snap.version < version`` and checks what it serves against the table); or built now when none is
    cached, with ``wait``, or inside a transaction (one build per organisation at a time; the others wait)."""
    with _cache_lock:
        found = _cache.get(organisation.pk)
        if found is not None and found.version >= version:
            _cache.move_to_end(organisation.pk)
            return found
        if found is not None and not wait and not connection.in_atomic_block:
            _rebuild_start(organisation, version)
            _cache.move_to_end(organisation.pk)
            return found
        build_lock = _build_locks.setdefault(organisation.pk, threading.Lock())
    with build_lock:
        with _cache_lock:
            found = _cache.get(organisation.pk)
            if found is not None and found.version >= version:
                return found
        return _keep(organisation.pk, _build(organisation, version))


def _keep(organisation_id: int, built: Snapshot) -> Snapshot:
    """Swap ``built`` in (unless a newer one got there first); returns the one kept."""
    with _cache_lock:
        found = _cache.get(organisation_id)
        if found is not None and found.version > built.version:
            return found
        _cache[organisation_id] = built
        _cache.move_to_end(organisation_id)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return built


def _rebuild_start(organisation, version: int) -> None:
    """Start the organisation's background build unless one runs (call with ``_cache_lock`` held)."""
    running = _rebuilding.get(organisation.pk)
    if running is not None and running.is_alive():
        return
    thread = threading.Thread(
        target=_rebuild,
        args=(organisation, version),
        name=f"catalogue-snapshot-{organisation.pk}",
        daemon=True,
    )
    _rebuilding[organisation.pk] = thread
    thread.start()


def _rebuild(organisation, version: int) -> None:
    """The background build: the version is read again first (the rows read after it are at least that
    new), so a burst of writes is caught up by one build; a failure leaves the stale snapshot serving and
    the next request starts another."""
    try:
        latest = max(version, catalogue_version(organisation))
        with _build_locks.setdefault(organisation.pk, threading.Lock()):
            _keep(organisation.pk, _build(organisation, latest))
    except Exception:
        logger.exception("catalogue snapshot rebuild failed for organisation %s", organisation.pk)
    finally:
        with _cache_lock:
            if _rebuilding.get(organisation.pk) is threading.current_thread():
                del _rebuilding[organisation.pk]
        connections.close_all()  # this thread's connections only


def rebuild_wait(*, organisation, timeout: float | None = None) -> bool:
    """Wait for the organisation's background build, if one runs; whether none runs now."""
    with _cache_lock:
        running = _rebuilding.get(organisation.pk)
    if running is not None:
        running.join(timeout)
        return not running.is_alive()
    return True


def snapshots_clear() -> None:
    """Forget every snapshot (tests that rewrite rows behind the services' back)."""
    with _cache_lock:
        _cache.clear()
