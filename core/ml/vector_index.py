"""Top-k search over unit vectors: exact with numpy for small sets, an ANN index (faiss IVF) above a size.

What belongs here: the in-memory index a search runs against, given keys and a float32 matrix of unit-length
rows (cosine = inner product). Plain Python + numpy (+ faiss-cpu, imported only when an ANN index is built);
no Django, no settings: where the vectors live and which model made them is ``core.vectors``'s business.

Below ``ANN_MIN_VECTORS`` rows the index is the matrix itself and a search is one matrix product plus
``argpartition``: exact, and at 10k x 384 well under a millisecond per query (``BENCHMARKS.md``, section 7).
At or above it, an inverted-file index (``faiss.IndexIVFFlat``, inner product, about sqrt(n) lists, k-means
trained on a sample of the rows, ``NPROBE`` lists scanned per query) answers in a few milliseconds where an
exact scan of 1M vectors takes a few hundred; its recall@10 against exact, build time and memory are in the
same section. IVF rather than HNSW: on these 2-core machines an HNSW graph of 100k vectors took 45 s to
build against 5-25 s for IVF, at the same recall, and an index is rebuilt whenever its rows change.
Threads: faiss uses OpenMP; ``threads`` sets its count explicitly (DESIGN.md: oversubscription hurts).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ANN_MIN_VECTORS = 50_000  # below this, exact numpy search is fast enough and needs no build
NPROBE = 32  # inverted lists scanned per query (of about sqrt(n)): recall against latency
TRAIN_PER_LIST = 40  # k-means sample: this many rows per list (faiss warns below 39)


class VectorIndexError(ValueError):
    """Bad input to an index: mismatched shapes, not float vectors, a dimension that differs."""


@dataclass(frozen=True)
class Match:
    key: Hashable
    score: float  # inner product of unit vectors = cosine similarity


def _as_matrix(vectors: Any, dim: int | None = None) -> np.ndarray:
    matrix = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise VectorIndexError(f"vectors must be a 2-d array (n, dim); got shape {matrix.shape}")
    if dim is not None and matrix.shape[1] != dim:
        raise VectorIndexError(f"vectors have {matrix.shape[1]} dimensions; the index has {dim}")
    if not np.isfinite(matrix).all():
        raise VectorIndexError("vectors contain NaN or infinite values")
    return matrix


class VectorIndex:
    """Keys and their vectors, searchable by inner product; ``kind`` is ``"exact"`` or ``"ann"``."""

    def __init__(
        self,
        keys: Sequence[Hashable],
        vectors: Any,
        *,
        ann_min: int = ANN_MIN_VECTORS,
        nprobe: int = NPROBE,
        threads: int = 1,
    ) -> None:
        self.keys = list(keys)
        matrix = _as_matrix(vectors) if len(self.keys) else np.zeros((0, 1), dtype=np.float32)
        if matrix.shape[0] != len(self.keys):
            raise VectorIndexError(f"{len(self.keys)} keys but {matrix.shape[0]} vectors")
        self.dim = int(matrix.shape[1])
        self.kind = "ann" if len(self.keys) >= max(1, ann_min) else "exact"
        self._matrix: np.ndarray | None = matrix if self.kind == "exact" else None
        self.nprobe, self.threads = nprobe, threads
        self._ann: Any = _ivf(matrix, threads) if self.kind == "ann" else None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        """Memory the index holds (vectors, and the graph for an ANN index), in bytes."""
        if self._matrix is not None:
            return int(self._matrix.nbytes)
        import faiss

        return int(faiss.serialize_index(self._ann).nbytes)

    def search(self, queries: Any, k: int) -> list[list[Match]]:
        """The ``k`` best matches of each query row, best first (fewer when the index has fewer)."""
        return [[Match(key, score) for key, score in pairs] for pairs in self.search_pairs(queries, k)]

    def search_pairs(self, queries: Any, k: int) -> list[list[tuple[Hashable, float]]]:
        """``search`` as ``(key, score)`` pairs: what a hot path reads, without a ``Match`` per hit (the
        scores and rows leave numpy in one ``tolist`` each: a ``float()``/``int()`` per element cost about
        0.5 ms for 1,000 hits)."""
        if k < 1:
            raise VectorIndexError("k must be at least 1")
        if not self.keys:
            return [[] for _ in range(_as_matrix(queries).shape[0])]
        matrix = _as_matrix(queries, self.dim)
        k = min(k, len(self.keys))
        scores, rows = self._search_exact(matrix, k) if self._ann is None else self._search_ann(matrix, k)
        keys = self.keys
        return [
            [(keys[r], s) for s, r in zip(srow, rrow, strict=True) if r >= 0]
            for srow, rrow in zip(scores.tolist(), rows.tolist(), strict=True)
        ]

    def _search_exact(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._matrix is not None
        scores = queries @ self._matrix.T  # (n_queries, n)
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top_scores, order, axis=1), np.take_along_axis(top, order, axis=1)

    def _search_ann(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        faiss.omp_set_num_threads(self.threads)
        self._ann.nprobe = min(self.nprobe, self._ann.nlist)
        return self._ann.search(queries, k)


def _ivf(matrix: np.ndarray, threads: int) -> Any:
    import faiss

    from core.ml.runtime import blas_libraries_loaded

    blas_libraries_loaded()  # faiss's own OpenBLAS on the process's BLAS threads, as numpy's
    faiss.omp_set_num_threads(threads)
    n, dim = matrix.shape
    lists = max(1, int(np.sqrt(n)))
    quantizer = faiss.IndexFlatIP(dim)
    # the lists hold the vectors in float16: a search reads half the memory (it is memory-bound: 0.55 against
    # 1.02 ms p50 at 100,000 vectors, nprobe 32) with the same top 10 (recall against exact unchanged to the
    # third digit; scores within about 1e-3); BENCHMARKS.md section 8
    index = faiss.IndexIVFScalarQuantizer(
        quantizer, dim, lists, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    sample = min(n, lists * TRAIN_PER_LIST)
    rows = np.random.default_rng(0).choice(n, sample, replace=False) if sample < n else slice(None)
    index.train(np.ascontiguousarray(matrix[rows]))
    index.add(matrix)
    return index


def unit_rows(vectors: Any) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero), float32."""
    matrix = _as_matrix(vectors)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1, norms)
