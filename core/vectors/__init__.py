"""The platform's vector index: texts -> vectors with the model that made them, and tenant-scoped top-k.

Vectors live on the product's own rows (a knowledge-base passage, a catalogue item, a document), not in a
core table: the row already carries what a hit must show, deletes with its parent, and stays under the
product's migrations. A product describes those rows once as a ``VectorSource`` (which queryset, which
fields hold the key, the vector bytes and the model reference, and how to rebuild stale rows) and calls:

- ``texts_embed`` to embed texts with the model its retrieval uses (``core.registry.services.text_embedder``:
  the organisation's active embedding version for the source's app/task, else the base encoder) and get
  the reference naming that model, stored beside every vector;
- ``embedding_reuse`` to search with vectors a classifier already computed for the query, when the source's
  model computes the same ones (the base encoder under a "head" classifier, in float; its row int8 copy's
  too where ``VECTOR_INT8_QUERIES`` allows);
- ``row_shapes`` for the fingerprint of a source's rows per model (one aggregate query), which a product
  may key caches of its own on (``shapes_fingerprint``: all models' rows together) and hand to
  ``vector_search`` (``shapes``) instead of a second query;
- ``vectors_fill`` to put those vectors and that reference on unsaved rows before it saves them;
- ``vector_search`` for the ``k`` closest rows to a query. Rows made by another model than the current one
  are stale: the search first has the source rebuild them (``VectorSource.rebuild``) and never mixes
  vectors of two models in one ranking.

The search runs on ``core.ml.vector_index.VectorIndex``: exact numpy top-k below ``VECTOR_ANN_MIN_VECTORS``
rows (a setting, default ``core.ml.vector_index.ANN_MIN_VECTORS`` = 50 000), a faiss HNSW index at or above
it. Either index is built once per process per (source, organisation, model, row-set fingerprint: count, sum
of keys, last ``updated_at``, one aggregate query per search) and kept in a small LRU (``INDEX_CACHE_SIZE``);
any insert, delete or update of the source's rows changes the fingerprint (a bulk update must set
``updated_at``) and the next search builds a fresh one, in that request: 1M vectors took 2.4 minutes to build
on a loaded 2-core machine (``BENCHMARKS.md``, section 7), so a product with a large, often-changing set
should warm the index from a job after its writes (the search then finds it cached).
Tenancy: every read is ``source.rows(organisation)`` filtered again on ``organisation``, and the cache
key carries the organisation, so no search can return another tenant's rows.
"""

from core.vectors.services import (
    INDEX_CACHE_SIZE,
    Embedded,
    VectorHit,
    VectorSource,
    current_model,
    embedding_reuse,
    row_shapes,
    shapes_fingerprint,
    texts_embed,
    vector_bytes,
    vector_index,
    vector_search,
    vectors_fill,
    vectors_stale,
)

__all__ = [
    "INDEX_CACHE_SIZE",
    "Embedded",
    "VectorHit",
    "VectorSource",
    "current_model",
    "embedding_reuse",
    "row_shapes",
    "shapes_fingerprint",
    "texts_embed",
    "vector_bytes",
    "vector_index",
    "vector_search",
    "vectors_fill",
    "vectors_stale",
]
