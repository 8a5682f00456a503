"""Embedding, staleness and top-k search over a product's vector rows (contract: ``core.vectors``)."""

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db.models import Count, Max, QuerySet, Sum

from core.errors import InvalidInput
from core.generations import GenerationCache
from core.ml.predictor import embeds_like
from core.ml.vector_index import ANN_MIN_VECTORS, VectorIndex
from core.registry import services as registry

INDEX_CACHE_SIZE = 8  # ANN indexes kept per process (each is about 1.7 KB per vector of 384 dims)
MAX_QUERY_CHARS = 10_000


@dataclass(frozen=True)
class VectorSource:
    """A product's rows that carry vectors: one per searchable thing (a passage, an item, a document).

    ``rows(organisation)`` gives the searchable rows (filters such as "published" belong there);
    ``rebuild(organisation, model)`` re-embeds the organisation's rows whose model is not ``model`` (under
    whatever locks the product needs) and returns how many it rebuilt. ``app``/``task`` name the embedding
    model the source's vectors come from.
    """

    name: str
    app: str
    task: str
    rows: Callable[[Any], QuerySet]
    rebuild: Callable[[Any, str], int]
    key_field: str = "pk"
    vector_field: str = "vector"
    model_field: str = "embedder"


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # (n, dim) float32, unit rows
    model: str  # the reference of the model that made them, e.g. "version:12" or "base:<sha256 prefix>"


@dataclass(frozen=True)
class VectorHit:
    key: Hashable
    score: float  # cosine similarity


# per organisation: {(app, task): reference}, read again when one of its model versions changes
_references: GenerationCache[dict[tuple[str, str], str]] = GenerationCache("registry")


def current_model(*, organisation, app: str, task: str) -> str:
    """The reference of the model that embeds for ``app``/``task`` now (vectors under another are stale).

    Asked on every search (a recommendation, a knowledge-base answer): cached per process behind the
    organisation's "registry" generation token (``core.generations``: any saved or deleted model version gives
    it a new one), so a warm search reads one Redis token instead of the active-version statement."""
    references = _references.get(organisation, dict)
    reference = references.get((app, task))
    if reference is None:
        reference = registry.text_embedder_reference(organisation=organisation, app=app, task=task)
        references[(app, task)] = reference
    return reference


def texts_embed(*, organisation, app: str, task: str, texts: Sequence[str]) -> Embedded:
    """Vectors of ``texts`` from the organisation's current model for ``app``/``task``, with its reference."""
    embedder, reference = registry.text_embedder(organisation=organisation, app=app, task=task)
    if not texts:
        return Embedded(np.zeros((0, 0), dtype=np.float32), reference)
    return Embedded(np.asarray(embedder.embed(list(texts)), dtype=np.float32), reference)


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=np.float32).tobytes()


def embedding_reuse(
    *, organisation, app: str, task: str, texts: Sequence[str], predictor: Any, vectors: Any
) -> Embedded | None:
    """``vectors``, which the classifier ``predictor`` computed for ``texts`` (``Predictor.embed``), as this
    app/task's embedding of them when its current model computes the same (``core.ml.predictor.embeds_like``:
    the base encoder, served in float; or its row int8 copy where ``VECTOR_INT8_QUERIES`` allows), else None
    (the caller embeds them itself)."""
    int8 = bool(settings.VECTOR_INT8_QUERIES)
    if (predictor.quantized and not int8) or not predictor.encoder_key.startswith("base:"):
        return None  # its vectors are no embedder's: no need to look up which one serves
    reference = current_model(organisation=organisation, app=app, task=task)  # cached, as a search asks
    if not reference.startswith("base:"):
        return None  # the organisation's own embedding model embeds for this app/task
    embedder = registry.base_embedder()
    if not embeds_like(predictor, embedder, texts, int8=int8):
        return None
    return Embedded(np.asarray(vectors, dtype=np.float32), reference)


def vectors_fill(*, source: VectorSource, objects: Sequence[Any], embedded: Embedded) -> None:
    """Put one vector and the model's reference on each (unsaved) row, in order."""
    if len(objects) != len(embedded.vectors):
        raise ValueError(f"{len(objects)} rows but {len(embedded.vectors)} vectors")
    for obj, vector in zip(objects, embedded.vectors, strict=True):
        setattr(obj, source.vector_field, vector_bytes(vector))
        setattr(obj, source.model_field, embedded.model)


def _rows(source: VectorSource, organisation) -> QuerySet:
    return source.rows(organisation).filter(organisation=organisation)  # fail closed on a wide queryset


def vectors_stale(*, source: VectorSource, organisation, model: str | None = None) -> QuerySet:
    """The organisation's rows of ``source`` made by another model than ``model`` (default: the current)."""
    if model is None:
        model = current_model(organisation=organisation, app=source.app, task=source.task)
    return _rows(source, organisation).exclude(**{source.model_field: model})


_cache: OrderedDict[tuple, VectorIndex] = OrderedDict()
_cache_lock = threading.Lock()


def _ann_min() -> int:
    return int(getattr(settings, "VECTOR_ANN_MIN_VECTORS", ANN_MIN_VECTORS))


def _load(rows: QuerySet, source: VectorSource) -> VectorIndex:
    pairs = list(rows.values_list(source.key_field, source.vector_field))
    if not pairs:
        return VectorIndex([], np.zeros((0, 1), dtype=np.float32))
    matrix = np.stack([np.frombuffer(bytes(vector), dtype=np.float32) for _key, vector in pairs])
    return VectorIndex([key for key, _v in pairs], matrix, ann_min=_ann_min())


Shape = tuple[int, Any, Any]  # (rows, sum of keys, last change): a row set's fingerprint


def shapes_fingerprint(shapes: dict[str, Shape]) -> Shape:
    """The fingerprint of all the rows of ``shapes`` together, whatever model made them."""
    changed = [shape[2] for shape in shapes.values() if shape[2] is not None]
    return (
        sum(shape[0] for shape in shapes.values()),
        sum(shape[1] or 0 for shape in shapes.values()),
        max(changed, default=None),
    )


def row_shapes(*, source: VectorSource, organisation) -> dict[str, Shape]:
    """The fingerprint of the organisation's rows per model reference (rows, sum of keys, last change), in one
    query: whether there are rows at all, whether any are stale, what the current model's rows look like.
    Any insert, delete or save of a row changes it; a product may key a cache of its own on it."""
    rows = (
        _rows(source, organisation)
        .values(source.model_field)
        .annotate(n=Count("pk"), pks=Sum("pk"), changed=Max("updated_at"))
        .order_by()
    )
    return {row[source.model_field]: (row["n"], row["pks"], row["changed"]) for row in rows}


def _index(source: VectorSource, organisation, model: str, shape: Shape | None) -> VectorIndex:
    """The index over the rows of ``model`` whose fingerprint is ``shape`` (None: there are none): from the
    cache while the fingerprint holds, else read and cached. Any insert, delete or save of a row changes the
    fingerprint (its count, its keys' sum or its last ``updated_at``)."""
    if shape is None:
        return VectorIndex([], np.zeros((0, 1), dtype=np.float32))
    key = (source.name, organisation.pk, model, *shape)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    rows = _rows(source, organisation).filter(**{source.model_field: model})
    index = _load(rows, source)  # outside the lock: building a large index takes seconds
    with _cache_lock:
        stale = [k for k in _cache if k[:3] == key[:3]]  # the same rows before their last change
        for old in stale:
            del _cache[old]
        _cache[key] = index
        while len(_cache) > INDEX_CACHE_SIZE:
            _cache.popitem(last=False)
    return index


def vector_index(*, source: VectorSource, organisation, model: str) -> VectorIndex:
    """The index over the organisation's rows made by ``model``, kept per process (exact numpy top-k below
    ``VECTOR_ANN_MIN_VECTORS`` rows, faiss above) while the row set stays the same: one aggregate query
    checks that it does, where reading every vector again cost a question more than ranking them."""
    return _index(
        source, organisation, model, row_shapes(source=source, organisation=organisation).get(model)
    )


def vector_search(
    *,
    source: VectorSource,
    organisation,
    query: str | Embedded,
    k: int,
    shapes: dict[str, Shape] | None = None,
) -> tuple[list[VectorHit], Embedded | None]:
    """The ``k`` rows closest to ``query`` (cosine), best first, and the query's embedding (None when the
    organisation has no rows: nothing is embedded then). Stale rows are rebuilt first (``source.rebuild``),
    and only rows made by the query's model are ranked. ``shapes``: what ``row_shapes`` just gave for the
    same source and organisation (else it is read here)."""
    if isinstance(query, str) and len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"The query is over {MAX_QUERY_CHARS} characters.", details={"field": "query"})
    if k < 1:
        raise InvalidInput("k must be at least 1.", details={"field": "k"})
    if shapes is None:
        shapes = row_shapes(source=source, organisation=organisation)
    if not shapes:
        return [], None
    embedded = (
        query
        if isinstance(query, Embedded)
        else texts_embed(organisation=organisation, app=source.app, task=source.task, texts=[query])
    )
    if any(model != embedded.model for model in shapes):  # rows of another model (or none): stale
        source.rebuild(organisation, embedded.model)
        shapes = row_shapes(source=source, organisation=organisation)
    index = _index(source, organisation, embedded.model, shapes.get(embedded.model))
    if not len(index):
        return [], embedded
    matches = index.search(embedded.vectors[:1], k)[0]
    return [VectorHit(m.key, m.score) for m in matches], embedded
