"""The in-memory index: exact numpy top-k below the threshold, faiss IVF above it, recall against exact."""

import numpy as np
import pytest

from core.ml.vector_index import VectorIndex, VectorIndexError, unit_rows


def clustered(n: int, *, dim: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim))
    return unit_rows(centres[rng.integers(0, 50, n)] + rng.standard_normal((n, dim)) * 0.8)


def test_exact_search_is_the_brute_force_ranking():
    vectors, queries = clustered(500), clustered(5, seed=1)
    index = VectorIndex([f"k{i}" for i in range(500)], vectors)
    assert index.kind == "exact" and len(index) == 500
    for query, matches in zip(queries, index.search(queries, 7), strict=True):
        expected = np.argsort(-(vectors @ query))[:7]
        assert [m.key for m in matches] == [f"k{i}" for i in expected]
        assert matches[0].score == pytest.approx(float(vectors[expected[0]] @ query), abs=1e-5)


def test_above_the_threshold_an_ann_index_finds_nearly_what_exact_finds():
    vectors, queries = clustered(4000), clustered(50, seed=2)
    exact = VectorIndex(range(4000), vectors, ann_min=10**9)
    ann = VectorIndex(range(4000), vectors, ann_min=1000)
    assert (exact.kind, ann.kind) == ("exact", "ann")
    recalls = [
        len({m.key for m in a} & {m.key for m in e}) / 10
        for a, e in zip(ann.search(queries, 10), exact.search(queries, 10), strict=True)
    ]
    assert np.mean(recalls) >= 0.9
    best = ann.search(vectors[123], 1)[0][0]  # a stored vector finds itself
    assert best.key == 123 and best.score == pytest.approx(1.0, abs=1e-4)
    assert 0.5 * vectors.nbytes <= ann.nbytes < vectors.nbytes  # the lists hold the vectors in float16


def test_fewer_rows_than_k_and_an_empty_index():
    index = VectorIndex(["a", "b"], unit_rows(np.eye(2, 8)))
    assert [m.key for m in index.search(np.eye(1, 8), 5)[0]] == ["a", "b"]
    assert VectorIndex([], np.zeros((0, 8))).search(np.eye(1, 8), 3) == [[]]


@pytest.mark.parametrize(
    ("keys", "vectors", "message"),
    [
        (["a"], np.zeros((2, 4)), "1 keys but 2 vectors"),
        (["a"], np.zeros((1, 2, 2)), "2-d array"),
        (["a"], np.array([[np.nan, 1.0]]), "NaN"),
    ],
)
def test_bad_vectors_are_refused(keys, vectors, message):
    with pytest.raises(VectorIndexError, match=message):
        VectorIndex(keys, vectors)


def test_bad_queries_are_refused():
    index = VectorIndex(["a"], np.ones((1, 4)))
    with pytest.raises(VectorIndexError, match="3 dimensions; the index has 4"):
        index.search(np.ones((1, 3)), 1)
    with pytest.raises(VectorIndexError, match="k must be at least 1"):
        index.search(np.ones((1, 4)), 0)
