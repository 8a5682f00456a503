"""The recommender's baselines, in plain Python (numpy/scipy, no Django): popularity, item-kNN, EASE.

Every model is an item list, a popularity vector (recent, time-decayed) and, for the collaborative ones, an
item-item matrix ``S`` (items x items, sparse: each row keeps its ``neighbours`` strongest entries). A user
is a weighted history ``x`` over items; the scores are ``x @ S`` plus a tiny share of popularity (which
breaks ties and ranks every item for a user the matrix knows nothing about). Item ``j``'s explanation is the
history items ``i`` with the largest ``x[i] * S[i, j]``.

- popularity: sum over events of weight * 2^(-age / half-life), age from the newest event.
- item-kNN: cosine of the binarised co-occurrence (users x items) columns, diagonal zeroed.
- EASE (Steck 2019): B = I - P diagMat(1 / diag(P)), P = (X^T X + lambda I)^-1, diagonal zeroed; closed form,
  dense in the number of items (fine up to tens of thousands).

Evaluation: leave-last-out per user (``split_leave_last_out``): the item a user came to last is held out,
the rest trains; NDCG@10, Recall@10 and HR@10 over ranked lists that exclude the user's own items. The
model that serves is then fitted again on every event (the latest items matter most to a shop), and keeps
the held-out fit beside it (``evaluation``) for evaluation and promotion.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

METHODS = ("popularity", "itemknn", "ease")
POPULARITY_SHARE = 1e-6  # popularity's weight beside the collaborative score (ties and unknown users)

Interaction = tuple[str, str, float, float]  # user, item, weight, unix time
HeldOut = tuple[list[str], str]  # the user's training items, the item to find


class RowColumns:
    """Entries ``matrix[rows, j]`` for one set of rows and many ``j``: one request explains its k items from
    one history. The rows are sliced into a CSC copy once per set (scipy's fancy indexing per item cost about
    0.7 ms each), then each column is read from its index pointers."""

    def __init__(self) -> None:
        self._last: tuple = ((), None)

    def column(self, matrix: sp.csr_matrix, rows: list[int], j: int) -> np.ndarray:
        key = tuple(rows)
        last = self._last
        if last[0] != key or last[1] is None:
            last = (key, sp.csc_matrix(matrix[rows]))
            self._last = last
        sub = last[1]
        out = np.zeros(len(rows), dtype=np.float64)
        start, end = sub.indptr[j], sub.indptr[j + 1]
        out[sub.indices[start:end]] = sub.data[start:end]
        return out


@dataclass(frozen=True)
class RankConfig:
    method: str = "ease"
    ease_lambda: float = 300.0
    neighbours: int = 200  # entries kept per row of the item-item matrix
    half_life_days: float = 14.0  # popularity's decay

    def validate(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        if not 0 < self.ease_lambda <= 1e7:
            raise ValueError("ease_lambda must be above 0 (and at most 10,000,000)")
        if not 1 <= self.neighbours <= 5000:
            raise ValueError("neighbours must be from 1 to 5,000")
        if not 0 < self.half_life_days <= 3650:
            raise ValueError("half_life_days must be above 0 (and at most 3,650)")


@dataclass
class RankModel:
    config: RankConfig
    items: list[str]
    popularity: np.ndarray  # (n_items,) float32, max 1
    similarity: sp.csr_matrix | None  # (n_items, n_items) float32; None for popularity
    # the same method fitted without the held-out items: what evaluation and promotion score (the model
    # itself, fitted on every event, has seen them)
    evaluation: RankModel | None = None

    def __post_init__(self) -> None:
        self.index = {item: i for i, item in enumerate(self.items)}
        self._columns = RowColumns()

    def vector(self, history: dict[str, float]) -> np.ndarray:
        x = np.zeros(len(self.items), dtype=np.float32)
        for item, weight in history.items():
            i = self.index.get(item)
            if i is not None:
                x[i] += weight
        return x

    def scores(self, history: dict[str, float]) -> np.ndarray:
        """(n_items,) scores for a weighted history (items the model does not know are ignored)."""
        base = POPULARITY_SHARE * self.popularity
        if self.similarity is None:
            return self.popularity.copy()
        x = self.vector(history)
        held = np.flatnonzero(x)
        if not len(held):
            return self.popularity.copy()
        # the history's rows only: the same sum as S.T @ x, without a pass over the whole matrix
        return np.asarray(self.similarity[held].T @ x[held], dtype=np.float32) + base

    def similar(self, item: str) -> np.ndarray:
        """(n_items,) scores of the items like ``item`` (its row of the matrix; popularity for popularity)."""
        return self.scores({item: 1.0})

    def why(self, history: dict[str, float], item: str, limit: int = 3) -> list[str]:
        """The history items that contributed most to ``item``'s score (positive contributions only)."""
        j = self.index.get(item)
        if j is None or self.similarity is None:
            return []
        known = [(i, weight) for i, weight in history.items() if i in self.index]
        if not known:
            return []
        rows = [self.index[i] for i, _ in known]  # row slices of a CSR matrix are cheap, columns are not
        column = self._columns.column(self.similarity, rows, j)
        contributions = [(weight * column[n], i) for n, (i, weight) in enumerate(known)]
        ranked = sorted((c for c in contributions if c[0] > 0), reverse=True)
        return [i for _, i in ranked[:limit]]


def _matrix(train: list[Interaction]) -> tuple[sp.csr_matrix, list[str]]:
    """Binarised users x items matrix and the item list (sorted)."""
    items = sorted({i for _, i, _, _ in train})
    users = sorted({u for u, _, _, _ in train})
    item_ix, user_ix = {i: n for n, i in enumerate(items)}, {u: n for n, u in enumerate(users)}
    pairs = {(user_ix[u], item_ix[i]) for u, i, _, _ in train}
    rows, cols = zip(*pairs, strict=True) if pairs else ((), ())
    x = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (rows, cols)), shape=(len(users), len(items)))
    return x, items


def _popularity(train: list[Interaction], items: list[str], half_life_days: float) -> np.ndarray:
    index = {i: n for n, i in enumerate(items)}
    newest = max((t for *_, t in train), default=0.0)
    pop = np.zeros(len(items), dtype=np.float64)
    half_life_s = half_life_days * 86400
    for _, item, weight, when in train:
        pop[index[item]] += weight * 2.0 ** (-(newest - when) / half_life_s)
    top = pop.max() if len(pop) else 0.0
    return (pop / top if top > 0 else pop).astype(np.float32)


def _prune(dense: np.ndarray, keep: int) -> sp.csr_matrix:
    """Keep the ``keep`` largest-magnitude entries of each row."""
    n = dense.shape[0]
    if keep < n:
        cut = np.argpartition(-np.abs(dense), keep - 1, axis=1)[:, :keep]
        mask = np.zeros_like(dense, dtype=bool)
        np.put_along_axis(mask, cut, True, axis=1)
        dense = np.where(mask, dense, 0.0)
    return sp.csr_matrix(dense.astype(np.float32))


def _itemknn(x: sp.csr_matrix) -> np.ndarray:
    gram = (x.T @ x).toarray().astype(np.float64)
    norms = np.sqrt(np.diag(gram))
    norms[norms == 0] = 1.0
    sim = gram / norms[:, None] / norms[None, :]
    np.fill_diagonal(sim, 0.0)
    return sim


def _ease(x: sp.csr_matrix, lam: float) -> np.ndarray:
    gram = (x.T @ x).toarray().astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def fit(*, config: RankConfig, train: list[Interaction]) -> RankModel:
    config.validate()
    if not train:
        raise ValueError("there are no events to train on")
    x, items = _matrix(train)
    popularity = _popularity(train, items, config.half_life_days)
    similarity = None
    if config.method == "itemknn":
        similarity = _prune(_itemknn(x), config.neighbours)
    elif config.method == "ease":
        similarity = _prune(_ease(x, config.ease_lambda), config.neighbours)
    return RankModel(config=config, items=items, popularity=popularity, similarity=similarity)


def split_leave_last_out(interactions: list[Interaction]) -> tuple[list[Interaction], list[HeldOut]]:
    """Per user with two items or more: the item they came to last is held out (all its events leave
    training); the rest trains. Users with one item only train."""
    first_seen: dict[str, dict[str, float]] = defaultdict(dict)
    for user, item, _, when in interactions:
        first_seen[user].setdefault(item, when)
    held: dict[str, str] = {}
    for user, seen in first_seen.items():
        if len(seen) >= 2:
            held[user] = max(seen, key=lambda i: (seen[i], i))
    train = [row for row in interactions if held.get(row[0]) != row[1]]
    held_out = [
        (sorted(i for i in first_seen[u] if i != target), target) for u, target in sorted(held.items())
    ]
    return train, held_out


def evaluate(*, model: RankModel, held_out: list[HeldOut], k: int = 10) -> dict[str, float]:
    """NDCG@k, Recall@k and HR@k (one held-out item per user: recall and hit rate agree) over full rankings
    that exclude the user's own items; by the model's evaluation model when it has one."""
    model = model.evaluation or model
    ndcg = hits = 0.0
    for history, target in held_out:
        t = model.index.get(target)
        if t is None:
            continue  # an item nobody else bought: no collaborative model can rank it; counted as a miss
        scores = model.scores({i: 1.0 for i in history})
        for i in history:
            if i in model.index:
                scores[model.index[i]] = -np.inf
        rank = int((scores > scores[t]).sum())
        if rank < k:
            hits += 1
            ndcg += 1.0 / math.log2(rank + 2)
    n = max(1, len(held_out))
    return {
        f"ndcg@{k}": ndcg / n,
        f"recall@{k}": hits / n,
        f"hr@{k}": hits / n,
        "users": float(len(held_out)),
    }


# --- artifact files -------------------------------------------------------------------------------------


def save(model: RankModel, folder: Path, prefix: str = "") -> None:
    """Plain files (JSON and .npy, no pickles): the item list, the config, popularity, the sparse matrix as
    its three CSR arrays; the evaluation model beside it under ``evaluation_``."""
    (folder / f"{prefix}items.json").write_text(json.dumps(model.items))
    (folder / f"{prefix}config.json").write_text(json.dumps(asdict(model.config)))
    np.save(folder / f"{prefix}popularity.npy", model.popularity, allow_pickle=False)
    if model.similarity is not None:
        s = model.similarity.tocsr()
        for part, values in (
            ("data", s.data.astype(np.float32)),
            ("indices", s.indices.astype(np.int32)),
            ("indptr", s.indptr.astype(np.int64)),
        ):
            np.save(folder / f"{prefix}similarity_{part}.npy", values, allow_pickle=False)
    if model.evaluation is not None and not prefix:
        save(model.evaluation, folder, prefix="evaluation_")


def load(folder: Path, prefix: str = "") -> RankModel:
    items = json.loads((folder / f"{prefix}items.json").read_text())
    config = RankConfig(**json.loads((folder / f"{prefix}config.json").read_text()))
    popularity = np.load(folder / f"{prefix}popularity.npy", allow_pickle=False)
    similarity = None
    if (folder / f"{prefix}similarity_data.npy").exists():
        parts = [
            np.load(folder / f"{prefix}similarity_{p}.npy", allow_pickle=False)
            for p in ("data", "indices", "indptr")
        ]
        similarity = sp.csr_matrix(tuple(parts), shape=(len(items), len(items)))
    evaluation = None
    if not prefix and (folder / "evaluation_items.json").exists():
        evaluation = load(folder, prefix="evaluation_")
    return RankModel(
        config=config, items=items, popularity=popularity, similarity=similarity, evaluation=evaluation
    )
