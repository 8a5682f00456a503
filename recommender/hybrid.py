"""The hybrid ranker, in plain Python (numpy/scipy, no Django): collaborative, text, popularity, trend and
the tenant's boost, blended with weights fitted on a time-based validation split.

Features of a candidate item ``j`` for a user with weighted history ``x`` (each scaled to at most 1):

- ``collab``: EASE (``ranking``) on a time-decayed users x items matrix (an event ``d`` days before the
  newest weighs ``2^(-d / decay_days)``: this shop's recent baskets say more about next month), ``x @ B``
  divided by the user's largest absolute score;
- ``text``: cosine of the item's text vector (the shared encoder's, ``core.vectors``) with the user's text
  profile (the history's vectors summed with their weights, unit length), divided by the user's largest;
  items nobody has bought have text too, so this is how cold items are reached;
- ``popularity``: log(1 + buyers), at most 1; ``trend``: events decayed with a ``trend_days`` half-life,
  at most 1;
- ``boost``: the catalogue's ``boost`` attribute (a number, clipped to 0..1), a business signal whose weight
  the tenant sets (``boost_weight``); it is not fitted, since it says what the shop wants, not what users do.

Fitting (``fit``): the training events' last ``validation_days`` (at most a quarter of their span) are cut
off as a validation split; for each EASE lambda and decay in the config's grid the components are fitted
on the events before the cut, and the weights of text, popularity and trend (collab's is 1) are fitted by
coordinate ascent over a grid on NDCG@10 of the validation users' new items. The best setting is then
fitted on every training event. ``fit_like`` reuses another model's setting and weights (no validation),
as the served model reuses the evaluation model's.

Explanations: every feature but the global ones is a sum over history items, so each history item's share
of a candidate's score is ``w_c * x_i * B_ij / cmax + w_t * x_i * (v_i . v_j) / tmax``; ``why`` gives the
history items with the largest positive share.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recommender import ranking

LEARNED = ("text", "popularity", "trend")  # collab's weight is 1: the scale of the others is relative to it
GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8)
ROUNDS = 2
MIN_VALIDATION_USERS = 10
COLD_PLACE = 10
FALLBACK_WEIGHTS = {"text": 0.2, "popularity": 0.05, "trend": 0.1}  # when too few users validate


@dataclass(frozen=True)
class HybridConfig:
    method: str = "hybrid"
    ease_lambdas: tuple[float, ...] = (100.0, 300.0)
    decay_days: tuple[float, ...] = (30.0, 90.0)
    neighbours: int = 200
    trend_days: float = 3.0
    validation_days: float = 28.0
    validation_users: int = 1500
    boost_weight: float = 0.1
    cold_slots: int = 1  # items nobody has bought lifted to about the 10th place (by text, best first)
    seed: int = 0

    def validate(self) -> None:
        if self.method != "hybrid":
            raise ValueError("method must be hybrid")
        if not self.ease_lambdas or not all(0 < v <= 1e7 for v in self.ease_lambdas):
            raise ValueError("ease_lambdas must be one or more numbers above 0 (at most 10,000,000)")
        if not self.decay_days or not all(0 < v <= 3650 for v in self.decay_days):
            raise ValueError("decay_days must be one or more numbers above 0 (at most 3,650)")
        if len(self.ease_lambdas) * len(self.decay_days) > 9:
            raise ValueError("at most 9 (ease_lambdas x decay_days) settings")
        if not 1 <= self.neighbours <= 5000:
            raise ValueError("neighbours must be from 1 to 5,000")
        if not 0 < self.trend_days <= 3650 or not 0 < self.validation_days <= 3650:
            raise ValueError("trend_days and validation_days must be above 0 (at most 3,650)")
        if not 10 <= self.validation_users <= 100_000:
            raise ValueError("validation_users must be from 10 to 100,000")
        if not 0 <= self.boost_weight <= 10:
            raise ValueError("boost_weight must be from 0 to 10")
        if not 0 <= self.cold_slots <= 5:
            raise ValueError("cold_slots must be from 0 to 5")

    @classmethod
    def from_dict(cls, raw: dict) -> HybridConfig:
        raw = dict(raw)
        for key in ("ease_lambdas", "decay_days"):
            if key in raw:
                value = raw[key]
                raw[key] = tuple(float(v) for v in (value if isinstance(value, list | tuple) else [value]))
        return cls(**raw)


@dataclass
class Catalogue:
    """What the shop says about its items: a text and a unit vector per item (the same order), and boosts."""

    items: list[str]
    vectors: np.ndarray  # (n, dim) float32, unit rows
    texts: list[str]
    boosts: dict[str, float] = field(default_factory=dict)


@dataclass
class HybridModel:
    config: HybridConfig
    items: list[str]  # the collaborative items first (``n_collab`` of them), then items with text only
    n_collab: int
    collab: sp.csr_matrix  # (n_collab, n_collab) float32, EASE on decayed events, rows pruned
    vectors: np.ndarray  # (n_items, dim) float32 unit rows; zero rows for items without text
    texts: list[str]
    popularity: np.ndarray  # (n_items,) float32
    trend: np.ndarray  # (n_items,) float32
    boost: np.ndarray  # (n_items,) float32
    weights: dict[str, float]  # collab, text, popularity, trend, boost
    setting: dict[str, float]  # the chosen ease_lambda and decay_days
    validation: dict[str, float] = field(default_factory=dict)  # the validation split's figures
    evaluation: HybridModel | None = None

    def __post_init__(self) -> None:
        self.index = {item: i for i, item in enumerate(self.items)}
        self._last: tuple = ((), None)  # the last history ``why`` saw and its parts (one request explains
        # its ten items from one history)

    def vector(self, history: dict[str, float]) -> np.ndarray:
        x = np.zeros(len(self.items), dtype=np.float32)
        for item, weight in history.items():
            i = self.index.get(item)
            if i is not None:
                x[i] += weight
        return x

    def _parts(self, x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, float, np.ndarray]:
        """collab (n,), its scale, text (n,), its scale, the unit text profile (dim,)."""
        collab = np.zeros(len(self.items), dtype=np.float32)
        if x[: self.n_collab].any():
            collab[: self.n_collab] = self.collab.T @ x[: self.n_collab]
        profile = x @ self.vectors
        norm = float(np.linalg.norm(profile))
        profile = profile / norm if norm > 0 else profile
        text = self.vectors @ profile
        return collab, _scale(collab), text, _scale(text), profile

    def scores(self, history: dict[str, float]) -> np.ndarray:
        """(n_items,) blended scores for a weighted history (unknown items are ignored)."""
        return self.scores_with(history, np.zeros(0, np.float32), [])[0]

    def scores_with(
        self, history: dict[str, float], cosines: np.ndarray, boosts: list[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The scores of the model's items and of extra items given by their text's cosine with the history's
        profile (items added to the catalogue since training: they have text, and nothing else yet)."""
        w = self.weights
        x = self.vector(history)
        base = w["popularity"] * self.popularity + w["trend"] * self.trend + w["boost"] * self.boost
        if not x.any():
            return base, w["boost"] * np.asarray(boosts, dtype=np.float32)
        collab, cmax, text, tmax, profile = self._parts(x)
        scores = w["collab"] * collab / cmax + w["text"] * text / tmax + base
        cosines = np.asarray(cosines, np.float32)
        extra = w["text"] * cosines / tmax + w["boost"] * np.asarray(boosts, np.float32)
        if self.config.cold_slots:
            self._lift_cold(scores, extra, x, text, cosines)
        return scores, extra

    def _lift_cold(
        self, scores: np.ndarray, extra: np.ndarray, x: np.ndarray, text: np.ndarray, cosines: np.ndarray
    ) -> None:
        """Lift the ``cold_slots`` items nobody had bought whose text is closest to the history's to just
        above the 10th best other item not in the history (in place): the blend alone seldom ranks an item
        with no sales in a top 10, and a shop wants its new items seen by those they suit."""
        warm = scores[: self.n_collab][x[: self.n_collab] == 0]
        if len(warm) < COLD_PLACE:
            return
        floor = float(np.partition(warm, -COLD_PLACE)[-COLD_PLACE]) + 1e-6
        cold = np.arange(self.n_collab, len(self.items))
        cold = cold[x[cold] == 0]
        candidates = [(float(text[i]), 0, int(i)) for i in cold[np.argsort(-text[cold])[:5]]]
        candidates += [(float(c), 1, n) for n, c in enumerate(cosines)]
        for _, where, i in sorted(candidates, reverse=True)[: self.config.cold_slots]:
            target = scores if where == 0 else extra
            target[i] = max(float(target[i]), floor)

    def similar(self, item: str) -> np.ndarray:
        return self.scores({item: 1.0})

    def why(self, history: dict[str, float], item: str, limit: int = 3) -> list[str]:
        """The history items with the largest positive share of ``item``'s score (collab and text)."""
        j = self.index.get(item)
        if j is None:
            return []
        known = [(i, weight) for i, weight in history.items() if i in self.index]
        if not known:
            return []
        key = tuple(sorted(history.items()))
        last = self._last
        if last[0] != key or last[1] is None:
            x = self.vector(history)
            last = (key, (x, self._parts(x)))
            self._last = last
        x, (_, cmax, _, tmax, _) = last[1]
        rows = [self.index[i] for i, _ in known]
        share = np.zeros(len(known), dtype=np.float64)
        if j < self.n_collab:
            in_collab = [n for n, r in enumerate(rows) if r < self.n_collab]
            if in_collab:
                column = self.collab[[rows[n] for n in in_collab]][:, [j]].toarray().ravel()
                share[in_collab] += self.weights["collab"] * column / cmax
        norm = float(np.linalg.norm(x @ self.vectors)) or 1.0
        share += self.weights["text"] * (self.vectors[rows] @ self.vectors[j]) / norm / tmax
        share *= np.array([weight for _, weight in known])
        order = np.argsort(-share, kind="stable")
        return [known[n][0] for n in order[:limit] if share[n] > 0]


def _scale(values: np.ndarray) -> float:
    top = float(np.abs(values).max()) if len(values) else 0.0
    return top if top > 0 else 1.0


# --- fitting ----------------------------------------------------------------------------------------------


def _components(
    train: list[ranking.Interaction], catalogue: Catalogue, config: HybridConfig, lam: float, decay: float
) -> HybridModel:
    """Every part of the model but the weights, fitted on ``train``."""
    collab_items = sorted({i for _, i, _, _ in train})
    known = set(collab_items)
    items = collab_items + [i for i in catalogue.items if i not in known]
    index = {item: n for n, item in enumerate(items)}
    newest = max(t for *_, t in train)
    users = sorted({u for u, _, _, _ in train})
    user_ix = {u: n for n, u in enumerate(users)}
    latest: dict[tuple[int, int], float] = {}
    buyers: dict[str, set[str]] = defaultdict(set)
    for user, item, _, when in train:
        key = (user_ix[user], index[item])
        latest[key] = max(latest.get(key, when), when)
        buyers[item].add(user)
    rows, cols = zip(*latest, strict=True)
    ages = (newest - np.fromiter(latest.values(), dtype=np.float64)) / 86400
    x = sp.csr_matrix(
        (2.0 ** (-ages / decay), (rows, cols)), shape=(len(users), len(collab_items)), dtype=np.float64
    )
    collab = ranking._prune(ranking._ease(x, lam), config.neighbours)
    return HybridModel(
        config=config,
        items=items,
        n_collab=len(collab_items),
        collab=collab,
        vectors=_vectors(items, catalogue),
        texts=_texts(items, catalogue),
        popularity=_popularity(items, buyers),
        trend=_pad(ranking._popularity(train, collab_items, config.trend_days), len(items)),
        boost=np.array([min(1.0, max(0.0, catalogue.boosts.get(i, 0.0))) for i in items], dtype=np.float32),
        weights={"collab": 1.0, "text": 0.0, "popularity": 0.0, "trend": 0.0, "boost": config.boost_weight},
        setting={"ease_lambda": lam, "decay_days": decay},
    )


def _vectors(items: list[str], catalogue: Catalogue) -> np.ndarray:
    dim = catalogue.vectors.shape[1] if catalogue.vectors.ndim == 2 and len(catalogue.items) else 1
    out = np.zeros((len(items), dim), dtype=np.float32)
    where = {item: n for n, item in enumerate(catalogue.items)}
    for n, item in enumerate(items):
        if item in where:
            out[n] = catalogue.vectors[where[item]]
    return out


def _texts(items: list[str], catalogue: Catalogue) -> list[str]:
    where = dict(zip(catalogue.items, catalogue.texts, strict=True))
    return [where.get(item, "") for item in items]


def _popularity(items: list[str], buyers: dict[str, set[str]]) -> np.ndarray:
    counts = np.array([math.log1p(len(buyers.get(i, ()))) for i in items], dtype=np.float32)
    top = counts.max() if len(counts) else 0.0
    return counts / top if top > 0 else counts


def _pad(values: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    out[: len(values)] = values
    return out


@dataclass
class _Validation:
    histories: list[dict[str, float]]
    targets: list[set[str]]


def time_split(
    train: list[ranking.Interaction], config: HybridConfig
) -> tuple[list[ranking.Interaction], _Validation]:
    """The events before the validation cut, and the users' new items after it (a sample of users)."""
    times = [t for *_, t in train]
    newest, oldest = max(times), min(times)
    cut = newest - min(config.validation_days * 86400, 0.25 * (newest - oldest))
    before = [row for row in train if row[3] < cut]
    history: dict[str, dict[str, float]] = defaultdict(dict)
    for user, item, weight, _ in before:
        history[user][item] = history[user].get(item, 0.0) + weight
    after: dict[str, set[str]] = defaultdict(set)
    for user, item, _, when in train:
        if when >= cut and user in history and item not in history[user]:
            after[user].add(item)
    users = sorted(after)
    rng = np.random.default_rng(config.seed)
    if len(users) > config.validation_users:
        users = sorted(rng.choice(users, config.validation_users, replace=False).tolist())
    return before, _Validation([history[u] for u in users], [after[u] for u in users])


def _features(model: HybridModel, val: _Validation) -> dict[str, np.ndarray]:
    """(users, n_items) per-user scaled features of the validation users; own items set to -inf later."""
    n = len(model.items)
    out = {name: np.zeros((len(val.histories), n), dtype=np.float32) for name in ("collab", "text")}
    for u, history in enumerate(val.histories):
        collab, cmax, text, tmax, _ = model._parts(model.vector(history))
        out["collab"][u], out["text"][u] = collab / cmax, text / tmax
    return out


def _ndcg(scores: np.ndarray, own: list[np.ndarray], targets: list[np.ndarray], k: int = 10) -> float:
    total = 0.0
    for u in range(scores.shape[0]):
        row = scores[u].copy()
        row[own[u]] = -np.inf
        top = np.argpartition(-row, k)[:k]
        top = top[np.argsort(-row[top], kind="stable")]
        hits = np.isin(top, targets[u])
        dcg = float((hits / np.log2(np.arange(2, k + 2))).sum())
        ideal = float((1 / np.log2(np.arange(2, min(k, len(targets[u])) + 2))).sum())
        total += dcg / ideal
    return total / max(1, scores.shape[0])


def _fit_weights(model: HybridModel, val: _Validation) -> tuple[dict[str, float], float]:
    """Coordinate ascent over ``GRID`` for the learned weights; returns them and the validation NDCG@10."""
    feats = _features(model, val)
    glob = {"popularity": model.popularity, "trend": model.trend}
    own = [np.array([model.index[i] for i in h if i in model.index], dtype=np.int64) for h in val.histories]
    targets = [np.array([model.index[i] for i in t if i in model.index], dtype=np.int64) for t in val.targets]
    weights = {"text": 0.0, "popularity": 0.0, "trend": 0.0}
    boost = model.weights["boost"] * model.boost

    def score(w: dict[str, float]) -> float:
        total = feats["collab"] + w["text"] * feats["text"] + boost
        total = total + w["popularity"] * glob["popularity"] + w["trend"] * glob["trend"]
        return _ndcg(total, own, targets)

    best = score(weights)
    for _ in range(ROUNDS):
        for name in LEARNED:
            for value in GRID:
                trial = {**weights, name: value}
                result = score(trial)
                if result > best + 1e-6:
                    best, weights = result, trial
    return weights, best


def fit(
    *, config: HybridConfig, train: list[ranking.Interaction], catalogue: Catalogue, progress=None
) -> HybridModel:
    """Choose the setting and weights on a time-based validation split of ``train``, then fit on all of it."""
    config.validate()
    if not train:
        raise ValueError("there are no events to train on")
    before, val = time_split(train, config)
    choice: tuple[float, dict[str, float], float, float] | None = None
    if len(val.histories) >= MIN_VALIDATION_USERS and before:
        for lam in config.ease_lambdas:
            for decay in config.decay_days:
                weights, ndcg = _fit_weights(_components(before, catalogue, config, lam, decay), val)
                if progress is not None:
                    progress(f"lambda {lam:g}, decay {decay:g} days: validation NDCG@10 {ndcg:.4f}")
                if choice is None or ndcg > choice[0]:
                    choice = (ndcg, weights, lam, decay)
    if choice is None:  # too few users to fit on: the grid's first setting, and a little of everything
        model = _components(train, catalogue, config, *_first(config))
        model.weights.update(FALLBACK_WEIGHTS)
        model.validation = {"users": float(len(val.histories))}
        return model
    ndcg, weights, lam, decay = choice
    model = _components(train, catalogue, config, lam, decay)
    model.weights.update(weights)
    model.validation = {"ndcg@10": ndcg, "users": float(len(val.histories))}
    return model


def _first(config: HybridConfig) -> tuple[float, float]:
    return config.ease_lambdas[0], config.decay_days[0]


def fit_like(*, model: HybridModel, train: list[ranking.Interaction], catalogue: Catalogue) -> HybridModel:
    """``model``'s setting and weights, fitted on ``train`` (no validation)."""
    fitted = _components(
        train, catalogue, model.config, model.setting["ease_lambda"], model.setting["decay_days"]
    )
    fitted.weights = dict(model.weights)
    fitted.validation = dict(model.validation)
    return fitted


# --- artifact files ---------------------------------------------------------------------------------------


def save(model: HybridModel, folder: Path, prefix: str = "") -> None:
    """Plain files (JSON and .npy): items, texts, config, weights, the vectors and the CSR arrays."""
    meta = {
        "items": model.items,
        "n_collab": model.n_collab,
        "texts": model.texts,
        "config": asdict(model.config),
        "weights": model.weights,
        "setting": model.setting,
        "validation": model.validation,
    }
    (folder / f"{prefix}hybrid.json").write_text(json.dumps(meta))
    arrays: Iterable[tuple[str, np.ndarray]] = (
        ("vectors", model.vectors.astype(np.float32)),
        ("popularity", model.popularity),
        ("trend", model.trend),
        ("boost", model.boost),
        ("collab_data", model.collab.data.astype(np.float32)),
        ("collab_indices", model.collab.indices.astype(np.int32)),
        ("collab_indptr", model.collab.indptr.astype(np.int64)),
    )
    for name, values in arrays:
        np.save(folder / f"{prefix}{name}.npy", values, allow_pickle=False)
    if model.evaluation is not None and not prefix:
        save(model.evaluation, folder, prefix="evaluation_")


def load(folder: Path, prefix: str = "") -> HybridModel:
    meta = json.loads((folder / f"{prefix}hybrid.json").read_text())

    def array(name: str) -> np.ndarray:
        return np.load(folder / f"{prefix}{name}.npy", allow_pickle=False)

    n = int(meta["n_collab"])
    collab = sp.csr_matrix(
        (array("collab_data"), array("collab_indices"), array("collab_indptr")), shape=(n, n)
    )
    evaluation = None
    if not prefix and (folder / "evaluation_hybrid.json").exists():
        evaluation = load(folder, prefix="evaluation_")
    return HybridModel(
        config=HybridConfig.from_dict(meta["config"]),
        items=meta["items"],
        n_collab=n,
        collab=collab,
        vectors=array("vectors"),
        texts=meta["texts"],
        popularity=array("popularity"),
        trend=array("trend"),
        boost=array("boost"),
        weights=meta["weights"],
        setting=meta["setting"],
        validation=meta["validation"],
        evaluation=evaluation,
    )


def is_hybrid(folder: Path) -> bool:
    return (folder / "hybrid.json").exists()
