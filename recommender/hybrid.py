"""The hybrid ranker, in plain Python (numpy/scipy, no Django): collaborative, text, popularity, trend,
rising sales and the tenant's boost, blended with weights fitted on a time-based validation split.

Features of a candidate item ``j`` for a user with weighted history ``x`` (each scaled to at most 1):

- ``collab``: EASE (``ranking``) on a time-decayed users x items matrix (an event ``d`` days before the
  newest weighs ``2^(-d / decay_days)``: this shop's recent baskets say more about next month), ``x @ B``
  divided by the user's largest absolute score;
- ``text``: cosine of the item's text vector (the shared encoder's, ``core.vectors``) with the user's text
  profile (the history's vectors summed with their weights, unit length), divided by the user's largest;
  items nobody has bought have text too, so this is how cold items are reached;
- ``popularity``: log(1 + buyers), at most 1; ``trend``: events decayed with a ``trend_days`` half-life,
  at most 1;
- ``rising``: items whose sales are rising just before the newest event: the item's (weighted) events in the
  last ``rising_days`` days against what its rate over all the time before them predicts for that many days,
  as a Poisson z-score ``max(0, (recent - expected) / sqrt(expected + 1))``, divided by the largest (so at
  most 1). Trend says what sells now; rising says what sells more now than it used to (a shop's seasonal
  items in the weeks before their season). 0 everywhere when ``rising_days`` is 0 or the events span no more
  than ``rising_days``. Like popularity and trend it is the same for every user, so ``why`` names no
  history item for it (the served ``reason`` names it when it is the largest part);
- ``sequence``: what users went on to next: a transition matrix from each item to the items the same user
  took up within the ``sequence_window`` events after it (in time order; rows normalised, pruned like
  EASE), applied to the user's ``sequence_recent`` most recent items, the most recent weighing most
  (``sequence_decay`` per step back); the history is given most recent first (``user_history``'s order);
- ``tower``: the two-tower model's cosine of the user's vector with the item's (``twotower``: a projection
  of the item's text plus an item-id embedding, the user pooled from their recent items, trained on behaviour
  with a sampled softmax), divided by the user's largest; only with ``tower_epochs`` above 0 (trained once
  on the validation split's training part, its epochs chosen there by early stopping, then again on every
  event for that many epochs); cold items have its text part only. ``why`` does not explain this part;
- ``boost``: the catalogue's ``boost`` attribute (a number, clipped to 0..1), a business signal whose weight
  the tenant sets (``boost_weight``); it is not fitted, since it says what the shop wants, not what users do.

Fitting (``fit``): the training events' last ``validation_days`` (at most a quarter of their span) are cut
off as a validation split (``validation="time"``, a shop whose customers all buy in the same months), or
each user's last ``validation_share`` of items (``validation="user"``, users active in different years, as
MovieLens's are); for each EASE lambda and decay in the config's grid the components are fitted
on the events before the cut, and the weights of the others (``LEARNED``; collab's is 1) are fitted by
coordinate ascent over a grid on NDCG@10 of the validation users' new items (rising's is fitted last, so
when it earns no weight the others are what they were without it). The best setting is then
fitted on every training event. ``fit_like`` reuses another model's setting and weights (no validation),
as the served model reuses the evaluation model's.

Explanations: every feature but the global ones is a sum over history items, so each history item's share
of a candidate's score is ``w_c * x_i * B_ij / cmax + w_t * x_i * (v_i . v_j) / tmax`` plus, for the recent
items, ``w_s * d^k_i * T_ij / smax``; ``why`` gives the history items with the largest positive share, and
``parts`` each component's part of the score (those sums, the tower's, and the global ones), of which the
served ``reason`` (``recommender.explain``) names the largest.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender import ranking, twotower

LEARNED = (
    "text",
    "popularity",
    "trend",
    "sequence",
    "tower",
    "rising",
)  # collab's weight is 1: the scale of the others is relative to it
GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0)
ROUNDS = 2
MIN_VALIDATION_USERS = 10
COLD_PLACE = 10
FALLBACK_WEIGHTS = {
    "text": 0.2,
    "popularity": 0.05,
    "trend": 0.1,
    "sequence": 0.1,
    "tower": 0.0,
    "rising": 0.0,
}
SHARES_CACHED = 256  # items whose history shares one request keeps (``why`` then ``parts`` of each)
FULL_SCORING_MAX = 50_000  # items above which serving scores candidates only (``candidate_scores``)
BASE_CANDIDATES = 500  # the items with the best user-independent part (``HybridModel.base``) among them
VALIDATIONS = ("time", "user")
HISTORY_FLOOR = 0.2  # when too few users validate


@dataclass(frozen=True)
class HybridConfig:
    method: str = "hybrid"
    ease_lambdas: tuple[float, ...] = (100.0, 300.0)
    decay_days: tuple[float, ...] = (30.0, 90.0)
    history_decays: tuple[float, ...] = (1.0,)  # per step back in the history (1: every item alike)
    neighbours: int = 200
    trend_days: float = 3.0
    rising_days: float = 14.0  # the recent window of the rising component (0: no rising component)
    validation_days: float = 28.0
    validation_users: int = 1500
    validation: str = "time"  # or "user": each user's last ``validation_share`` of items
    validation_share: float = 0.2
    sequence_window: int = 10  # the events after an item that count as "went on to" (0: no sequence)
    sequence_recent: int = 50  # the history's most recent items that the sequence reads
    sequence_decay: float = 0.9  # the weight of each step back in the history
    boost_weight: float = 0.1
    cold_slots: int = 1  # items nobody has bought lifted to about the 10th place (by text, best first)
    tower_epochs: int = 0  # the two-tower model's most epochs (``twotower``; 0: no two-tower component)
    tower_dim: int = 64
    tower_threads: int = 1
    seed: int = 0

    def validate(self) -> None:
        if self.method != "hybrid":
            raise ValueError("method must be hybrid")
        if not self.ease_lambdas or not all(0 < v <= 1e7 for v in self.ease_lambdas):
            raise ValueError("ease_lambdas must be one or more numbers above 0 (at most 10,000,000)")
        if not self.decay_days or not all(0 < v <= 36500 for v in self.decay_days):
            raise ValueError("decay_days must be one or more numbers above 0 (at most 36,500)")
        if not self.history_decays or not all(0.5 <= v <= 1 for v in self.history_decays):
            raise ValueError("history_decays must be one or more numbers from 0.5 to 1")
        if len(self.ease_lambdas) * len(self.decay_days) * len(self.history_decays) > 9:
            raise ValueError("at most 9 (ease_lambdas x decay_days x history_decays) settings")
        if not 1 <= self.neighbours <= 5000:
            raise ValueError("neighbours must be from 1 to 5,000")
        if not 0 < self.trend_days <= 3650 or not 0 < self.validation_days <= 3650:
            raise ValueError("trend_days and validation_days must be above 0 (at most 3,650)")
        if not isinstance(self.rising_days, int | float) or not 0 <= self.rising_days <= 3650:
            raise ValueError("rising_days must be from 0 (no rising component) to 3,650")
        if not 10 <= self.validation_users <= 100_000:
            raise ValueError("validation_users must be from 10 to 100,000")
        if not 0 <= self.boost_weight <= 10:
            raise ValueError("boost_weight must be from 0 to 10")
        if not 0 <= self.cold_slots <= 5:
            raise ValueError("cold_slots must be from 0 to 5")
        if self.validation not in VALIDATIONS:
            raise ValueError("validation must be time or user")
        if not 0.05 <= self.validation_share <= 0.5:
            raise ValueError("validation_share must be from 0.05 to 0.5")
        if not 0 <= self.sequence_window <= 100 or not 1 <= self.sequence_recent <= 500:
            raise ValueError("sequence_window must be from 0 to 100 and sequence_recent from 1 to 500")
        if not 0 < self.sequence_decay <= 1:
            raise ValueError("sequence_decay must be above 0 and at most 1")
        if not 0 <= self.tower_epochs <= 100:
            raise ValueError("tower_epochs must be from 0 (no two-tower model) to 100")
        if self.tower_epochs:
            self.tower().validate()

    def tower(self) -> twotower.TowerConfig:
        """The two-tower model's settings (``tower_epochs`` the most, early stopping on validation)."""
        return twotower.TowerConfig(
            dim=self.tower_dim, epochs=max(1, self.tower_epochs), threads=self.tower_threads, seed=self.seed
        )

    @classmethod
    def from_dict(cls, raw: dict) -> HybridConfig:
        raw = dict(raw)
        for key in ("ease_lambdas", "decay_days", "history_decays"):
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
    weights: dict[str, float]  # collab, boost and the ``LEARNED`` ones
    setting: dict[str, float]  # the chosen ease_lambda and decay_days
    validation: dict[str, float] = field(default_factory=dict)  # the validation split's figures
    evaluation: HybridModel | None = None
    sequence: sp.csr_matrix | None = None  # (n_collab, n_collab) float32: item -> what users took up next
    tower: twotower.TowerModel | None = None  # the two-tower model over ``items`` (the same order)
    rising: np.ndarray | None = None  # (n_items,) float32; None with ``rising_days`` 0 and in older models

    def __post_init__(self) -> None:
        self.index = {item: i for i, item in enumerate(self.items)}
        self._last: tuple = ((), None)  # the last history ``why`` saw and its parts (one request explains
        # its ten items from one history)

    def vector(self, history: dict[str, float]) -> np.ndarray:
        """The history as a vector; with a ``history_decay`` below 1, the ``k``-th most recent item weighs
        ``max(history_decay^k, HISTORY_FLOOR)`` times its weight (the history is most recent first)."""
        x = np.zeros(len(self.items), dtype=np.float32)
        decay = float(self.setting.get("history_decay", 1.0))
        for k, (item, weight) in enumerate(history.items()):
            i = self.index.get(item)
            if i is not None:
                x[i] += weight if decay == 1.0 else weight * max(decay**k, HISTORY_FLOOR)
        return x

    def _held(self, history: dict[str, float], x: np.ndarray) -> np.ndarray:
        """``np.flatnonzero(x)`` for ``x = self.vector(history)``, from the history's rows (a catalogue of
        100,000 items is not scanned for its fifty)."""
        rows = np.fromiter((i for item in history if (i := self.index.get(item)) is not None), np.int64)
        rows = np.unique(rows)
        return rows[x[rows] != 0]

    def _parts(
        self, x: np.ndarray, history: dict[str, float]
    ) -> tuple[np.ndarray, float, np.ndarray, float, np.ndarray]:
        """collab (n,), its scale, text (n,), its scale, the unit text profile (dim,), for ``x`` =
        ``self.vector(history)``."""
        return self._parts_rows(x, history)[0]

    def _parts_rows(
        self, x: np.ndarray, history: dict[str, float]
    ) -> tuple[
        tuple[np.ndarray, float, np.ndarray, float, np.ndarray], tuple[np.ndarray, RowEntries] | None, float
    ]:
        """``_parts``, the history's collaborative rows (sorted) with their entries (``RowEntries``, read
        once: the explanations read their columns) or None when it has none, and the text profile's norm
        before it was made a unit vector (the explanations' text scale)."""
        collab = np.zeros(len(self.items), dtype=np.float32)
        held = self._held(history, x)  # the history's items: products over their rows only (the same numbers)
        in_collab = held[held < self.n_collab]
        rows = None
        if len(in_collab):
            rows = (in_collab, RowEntries.of(self.collab, in_collab))
            collab[: self.n_collab] = rows[1].weighted_sum(x[in_collab], self.n_collab)
        profile = x[held] @ self.vectors[held]
        norm = float(np.linalg.norm(profile))
        profile = profile / norm if norm > 0 else profile
        text = self.vectors @ profile
        return (collab, _scale(collab), text, _scale(text), profile), rows, norm

    def base(self, rows: np.ndarray | None = None) -> np.ndarray:
        """The user-independent part of the score (popularity, trend, boost, rising) of every item, or of
        ``rows``; with the rising weight 0 it is the same sum, to the bit, as before the rising component."""
        w = self.weights

        def part(values: np.ndarray) -> np.ndarray:
            return values if rows is None else values[rows]

        out = w["popularity"] * part(self.popularity) + w["trend"] * part(self.trend)
        out = out + w["boost"] * part(self.boost)
        if w.get("rising") and self.rising is not None:
            out = out + w["rising"] * part(self.rising)
        return out

    def scores(self, history: dict[str, float]) -> np.ndarray:
        """(n_items,) blended scores for a weighted history (unknown items are ignored)."""
        return self.scores_with(history, np.zeros(0, np.float32), [])[0]

    def scores_with(
        self, history: dict[str, float], cosines: np.ndarray, boosts: list[float], explain: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The scores of the model's items and of extra items given by their text's cosine with the history's
        profile (items added to the catalogue since training: they have text, and nothing else yet);
        ``explain``: also keep what ``why`` reads for this history, with the scales computed here (a served
        request, as ``candidate_scores`` does)."""
        w = self.weights
        x = self.vector(history)
        base = self.base()
        if not x.any():
            return base, w["boost"] * np.asarray(boosts, dtype=np.float32)
        (collab, cmax, text, tmax, profile), collab_rows, norm = self._parts_rows(x, history)
        scores = w["collab"] * collab / cmax + w["text"] * text / tmax + base
        sequence_scale = tower_scale = None
        if w.get("sequence"):
            sequence = self.sequence_scores(history)
            sequence_scale = _scale(sequence)
            scores += w["sequence"] * sequence / sequence_scale
        if w.get("tower") and self.tower is not None:
            tower = self.tower.scores(history)
            tower_scale = _scale(tower)
            scores += w["tower"] * tower / tower_scale
        if explain:
            self._remember(history, (cmax, tmax, norm), tower_scale, sequence_scale, collab_rows)
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

    def _recent(self, history: dict[str, float]) -> tuple[list[int], np.ndarray]:
        """The rows of the history's most recent known items (the history is most recent first) and the
        weight of each (``sequence_decay`` per step back)."""
        rows: list[int] = []
        for item in history:
            i = self.index.get(item)
            if i is not None and i < self.n_collab:
                rows.append(i)
                if len(rows) == self.config.sequence_recent:
                    break
        return rows, self.config.sequence_decay ** np.arange(len(rows), dtype=np.float32)

    def sequence_scores(self, history: dict[str, float]) -> np.ndarray:
        """(n_items,) what users went on to after the history's recent items (0 without a sequence)."""
        out = np.zeros(len(self.items), dtype=np.float32)
        collab = self._sequence_collab(history)
        if collab is not None:
            out[: self.n_collab] = collab
        return out

    def _sequence_collab(self, history: dict[str, float]) -> np.ndarray | None:
        """``sequence_scores`` of the collaborative items only (the others' are 0; None: all are 0)."""
        if self.sequence is None:
            return None
        rows, decay = self._recent(history)
        return self.sequence[rows].T @ decay if rows else None

    def _remember(self, history: dict[str, float], *pieces: Any) -> tuple[tuple, dict | None]:
        """Keep (and return) what ``why`` and ``parts`` read for ``history`` (``_explaining`` with the scales
        and rows the caller has, ``pieces``), keyed by the history in its order; None for a history with no
        item the model knows."""
        known = [(i, weight) for i, weight in history.items() if i in self.index]
        last = (tuple(history.items()), self._explaining(history, known, *pieces) if known else None)
        if known:
            self._last = last
        return last

    def _explaining(
        self,
        history: dict[str, float],
        known: list[tuple[str, float]],
        scales: tuple[float, ...] | None = None,
        tower_scale: float | None = None,
        sequence_scale: float | None = None,
        collab_rows: tuple[np.ndarray, RowEntries] | None = None,
        sequence_rows: RowEntries | None = None,
    ) -> dict:
        """What ``why`` and ``parts`` need of one history, computed once for the ten items of a request
        (``scales``, ``tower_scale``, ``sequence_scale``: the collab, text, tower and sequence scales when the
        caller has them, as ``candidate_scores`` does, ``scales`` with the text profile's norm third when the
        caller has that too (the history is then not read again here); ``collab_rows``: the history's
        collaborative rows (sorted) and their rows of ``collab``; ``sequence_rows``: the recent items' rows of
        ``sequence``)."""
        if scales is not None and len(scales) == 3:
            cmax, tmax, norm = scales
        else:
            x = self.vector(history)
            if scales is None:
                _, cmax, _, tmax, _ = self._parts(x, history)
            else:
                cmax, tmax = scales
            held = self._held(history, x)
            norm = float(np.linalg.norm(x[held] @ self.vectors[held]))
        rows = [self.index[i] for i, _ in known]
        place = {r: n for n, r in enumerate(rows)}
        if collab_rows is None:  # the places in ``known`` of the matrix's rows, and the rows
            in_collab = [n for n, r in enumerate(rows) if r < self.n_collab]
            collab = RowEntries.of(self.collab, np.array([rows[n] for n in in_collab])) if in_collab else None
        else:
            in_collab = [place[int(r)] for r in collab_rows[0]]
            collab = collab_rows[1] if in_collab else None
        out = {
            "cmax": cmax,
            "tnorm": (norm or 1.0) * tmax,
            "vectors": self.vectors[rows],
            "weights": np.array([weight for _, weight in known]),
            "collab_rows": in_collab,
            "collab": collab,
            "recent": [],
            "shares": {},
            "known": known,
        }
        if self.weights.get("tower") and self.tower is not None:  # the user's tower vector and its scale
            user = self.tower.user_vector(history)
            scale = tower_scale if tower_scale is not None else _scale(self.tower.item_vectors @ user)
            out["tower"] = (user, self.weights["tower"] / scale)
        if self.weights.get("sequence") and self.sequence is not None:
            recent, decay = self._recent(history)
            if recent:
                out |= {
                    "recent": recent,
                    "recent_places": [place[r] for r in recent],
                    "decay": decay,
                    "sequence": sequence_rows or RowEntries.of(self.sequence, np.array(recent)),
                    "smax": (
                        _scale(self.sequence_scores(history)) if sequence_scale is None else sequence_scale
                    ),
                }
        return out

    # --- serving a large catalogue: candidates only -------------------------------------------------------

    def candidate_scores(
        self,
        history: dict[str, float],
        text_hits: list[int],
        cosines: np.ndarray,
        boosts: list[float],
        more: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``scores_with`` for a catalogue too large to score whole per request (``FULL_SCORING_MAX``): the
        candidates (item indices), their scores, and the extra items' scores. Candidates: every item the
        history's collaborative (and sequence) rows reach, ``text_hits`` (the vector index's nearest items to
        the history's text, which hold the item closest to it) and the ``BASE_CANDIDATES`` best by popularity,
        trend, rising and boost, and ``more`` (item indices the caller adds: those within a request's filters
        when the others left fewer than it asked). Each candidate's score is ``scores_with``'s except that the
        text part is scaled by the candidates' largest text score (the same when the index found the closest
        item) and the cold lift chooses among candidates."""
        w = self.weights
        x = self.vector(history)
        held = self._held(history, x)
        in_collab = held[held < self.n_collab]
        collab_rows = RowEntries.of(self.collab, in_collab) if len(in_collab) else None  # read once
        reach = [collab_rows.columns] if collab_rows is not None else []
        sequence_rows, decay = None, None
        if w.get("sequence") and self.sequence is not None:
            recent, decay = self._recent(history)
            sequence_rows = RowEntries.of(self.sequence, np.array(recent)) if recent else None
            reach += [sequence_rows.columns] if sequence_rows is not None else []
        found = [np.asarray(text_hits, np.int64), self._base_top(), *reach]
        if more is not None:
            found.append(np.asarray(more, np.int64))
        marked = np.zeros(len(self.items), dtype=bool)  # ``np.unique`` of them: 10x faster than its sort
        marked[np.concatenate(found).astype(np.int64)] = True
        candidates = np.flatnonzero(marked)
        base = self.base(candidates)
        if not len(held):
            return candidates, base, w["boost"] * np.asarray(boosts, dtype=np.float32)
        collab = np.zeros(self.n_collab, dtype=np.float32)
        if collab_rows is not None:
            collab = collab_rows.weighted_sum(x[in_collab], self.n_collab)
        cmax = _scale(collab)
        collab_c = np.where(
            candidates < self.n_collab, collab[np.minimum(candidates, self.n_collab - 1)], 0.0
        )
        norm = None
        if w["text"] or self.config.cold_slots:
            profile = x[held] @ self.vectors[held]
            norm = float(np.linalg.norm(profile))
            text = self.vectors[candidates] @ (profile / norm if norm > 0 else profile)
            tmax = _scale(text)
        else:  # nothing reads the candidates' text: a 1,000 x 384 gather saved
            text, tmax = np.zeros(len(candidates), dtype=np.float32), 1.0
        scores = w["collab"] * collab_c / cmax + w["text"] * text / tmax + base
        sequence_scale = None
        if w.get("sequence"):  # ``sequence_scores`` of the candidates and its scale, from the collab part
            sequence = (
                sequence_rows.weighted_sum(decay, self.n_collab)
                if sequence_rows is not None
                else np.zeros(0, np.float32)
            )
            sequence_scale = _scale(sequence)
            sequence_c = np.zeros(len(candidates), dtype=np.float32)
            inside = candidates < len(sequence)
            sequence_c[inside] = sequence[candidates[inside]]
            scores += w["sequence"] * sequence_c / sequence_scale
        tower_scale = None
        if w.get("tower") and self.tower is not None:  # scaled by the candidates' largest, as text is
            tower = self.tower.item_vectors[candidates] @ self.tower.user_vector(history)
            tower_scale = _scale(tower)
            scores += w["tower"] * tower / tower_scale
        cosines = np.asarray(cosines, np.float32)
        extra = w["text"] * cosines / tmax + w["boost"] * np.asarray(boosts, np.float32)
        self._remember(  # what ``why`` reads for this history, with these scales
            history,
            (cmax, tmax) if norm is None else (cmax, tmax, norm),
            tower_scale,
            sequence_scale,
            (in_collab, collab_rows) if collab_rows is not None else None,
            sequence_rows,
        )
        if self.config.cold_slots:
            self._lift_cold_among(candidates, scores, extra, x, text, cosines)
        return candidates, scores.astype(np.float32), extra

    def _base_top(self) -> np.ndarray:
        return self._base_candidates()[0]

    def _base_candidates(self) -> tuple[np.ndarray, float]:
        """The ``BASE_CANDIDATES`` items with the best ``base`` (sorted indices) and the best ``base`` of the
        items outside them (-inf when there are none), computed once."""
        cached = getattr(self, "_base_top_cache", None)
        if cached is None:
            base = self.base()
            keep = min(BASE_CANDIDATES, len(base))
            top = np.sort(np.argpartition(-base, keep - 1)[:keep]) if keep else np.zeros(0, np.int64)
            outside = np.ones(len(base), dtype=bool)
            outside[top] = False
            cached = (top, float(base[outside].max()) if outside.any() else -np.inf)
            self._base_top_cache = cached
        return cached

    def text_neighbours_matter(self) -> bool:
        """Whether the catalogue's text neighbours of a history can raise an item's score: through the text
        part, the two-tower part (it scores whatever candidates the neighbours add) or the cold lift."""
        w = self.weights
        return bool(w.get("text") or (w.get("tower") and self.tower is not None) or self.config.cold_slots)

    def text_neighbours_ceiling(self) -> float:
        """For a model whose text neighbours do not matter (``text_neighbours_matter``): the most a text
        neighbour could score from being one, for a history the model knows. An item the model does not know
        scores 0 (its text part and boost are 0 for a neighbour); on the candidate path a neighbour nobody's
        history reaches adds a candidate scored by its ``base`` alone, at most the best outside the
        ``BASE_CANDIDATES`` (already candidates); under full scoring every known item is scored already. A
        top k whose last item scores above this is the top k the neighbours would give."""
        if len(self.items) <= FULL_SCORING_MAX:
            return 0.0
        return max(0.0, self._base_candidates()[1])

    def _lift_cold_among(
        self,
        candidates: np.ndarray,
        scores: np.ndarray,
        extra: np.ndarray,
        x: np.ndarray,
        text: np.ndarray,
        cosines: np.ndarray,
    ) -> None:
        """``_lift_cold`` over the candidates (in place)."""
        outside = x[candidates] == 0
        warm = scores[(candidates < self.n_collab) & outside]
        if len(warm) < COLD_PLACE:
            return
        floor = float(np.partition(warm, -COLD_PLACE)[-COLD_PLACE]) + 1e-6
        cold = np.flatnonzero((candidates >= self.n_collab) & outside)
        pairs = [(float(text[i]), 0, int(i)) for i in cold[np.argsort(-text[cold])[:5]]]
        pairs += [(float(c), 1, n) for n, c in enumerate(cosines)]
        for _, where, i in sorted(pairs, reverse=True)[: self.config.cold_slots]:
            target = scores if where == 0 else extra
            target[i] = max(float(target[i]), floor)

    def similar(self, item: str) -> np.ndarray:
        return self.scores({item: 1.0})

    def _explained(self, history: dict[str, float]) -> dict | None:
        """What ``_remember`` keeps for ``history`` (made now when another history's is kept), or None for a
        history with no item the model knows."""
        key = tuple(history.items())  # the order matters: the sequence reads the most recent items
        last = self._last  # read once: another thread's request may replace it meanwhile
        if last[0] != key or last[1] is None:
            last = self._remember(history)
        return last[1]

    def _shares(self, history: dict[str, float], j: int) -> tuple[list[tuple[str, float]], dict] | None:
        """Each history item's share of item ``j``'s collab, text and sequence parts (None: no known item)."""
        cached = self._explained(history)
        if cached is None:
            return None
        shares = cached["shares"]  # ``why`` and ``parts`` of one item ask for the same shares
        parts = shares.get(j)
        if parts is None:
            parts = self._shares_of(cached, [j])[0]
            if len(shares) < SHARES_CACHED:
                shares[j] = parts
        return cached["known"], parts

    def shares_prefetch(self, history: dict[str, float], items: list[str]) -> None:
        """``_shares`` of several items at once (a request's picks, before their ``why`` and ``parts``): the
        history's collaborative and sequence entries are matched to all of their columns in one pass instead
        of one pass an item."""
        cached = self._explained(history)
        if cached is None:
            return
        shares = cached["shares"]
        wanted: list[int] = []
        for item in items:
            j = self.index.get(item)
            if j is not None and j not in shares and j not in wanted:
                wanted.append(j)
        wanted = wanted[: max(0, SHARES_CACHED - len(shares))]
        if wanted:
            shares.update(zip(wanted, self._shares_of(cached, wanted), strict=True))

    def _shares_of(self, cached: dict, wanted: list[int]) -> list[dict]:
        """The shares of the history (``cached``: what ``_remember`` keeps for it) in each of the items
        ``wanted`` (distinct indices), computed together."""
        js = np.array(wanted, dtype=np.int64)
        known = cached["known"]
        collab = np.zeros((len(known), len(js)), dtype=np.float64)
        if cached["collab_rows"]:
            block = cached["collab"].columns_of(js)
            block[:, js >= self.n_collab] = 0
            collab[cached["collab_rows"]] = self.weights["collab"] * block / cached["cmax"]
        sequence = np.zeros((len(known), len(js)), dtype=np.float64)
        if cached["recent"]:
            block = cached["sequence"].columns_of(js)
            block[:, js >= self.n_collab] = 0
            sequence[cached["recent_places"]] = (
                self.weights["sequence"] * cached["decay"][:, None] * block / cached["smax"]
            )
        tower = cached.get("tower") if self.tower is not None else None
        out = []
        for n, j in enumerate(wanted):
            text = self.weights["text"] * (cached["vectors"] @ self.vectors[j]) / cached["tnorm"]
            parts = {
                "collab": collab[:, n] * cached["weights"],
                "text": text * cached["weights"],
                "sequence": sequence[:, n],
            }
            if tower is not None:
                parts["tower"] = np.array([tower[1] * float(self.tower.item_vectors[j] @ tower[0])])  # type: ignore[union-attr]
            out.append(parts)
        return out

    def why(self, history: dict[str, float], item: str, limit: int = 3) -> list[str]:
        """The history items with the largest positive share of ``item``'s score (collab, text, sequence)."""
        j = self.index.get(item)
        found = None if j is None else self._shares(history, j)
        if found is None:
            return []
        known, parts = found
        share = parts["collab"] + parts["text"] + parts["sequence"]
        order = np.argsort(-share, kind="stable")
        return [known[n][0] for n in order[:limit] if share[n] > 0]

    def parts(self, history: dict[str, float], item: str) -> dict[str, float]:
        """Each component's part of ``item``'s score for ``history``, as the blend weighs it: collab, text,
        sequence and tower come from the history, popularity, trend, rising and boost are the same for every
        user (empty for an item the model does not know). What the served ``reason`` names the largest of."""
        j = self.index.get(item)
        if j is None:
            return {}
        w = self.weights
        out = {
            "popularity": float(w["popularity"] * self.popularity[j]),
            "trend": float(w["trend"] * self.trend[j]),
            "boost": float(w["boost"] * self.boost[j]),
        }
        if w.get("rising") and self.rising is not None:
            out["rising"] = float(w["rising"] * self.rising[j])
        found = self._shares(history, j)
        if found is not None:
            for name, values in found[1].items():
                out[name] = float(values.sum())
        return out

    def cold(self, item: str) -> bool:
        """Whether nobody had bought ``item`` in the events the model was fitted on (or it is not in it)."""
        j = self.index.get(item)
        return j is None or j >= self.n_collab


@dataclass(frozen=True)
class RowEntries:
    """Some rows of a CSR matrix, read from its arrays once: each entry's row (its place among ``rows``),
    column and value, row after row as ``matrix[rows]`` holds them. A request scores and explains with these
    (``weighted_sum``, ``columns_of``) instead of slicing the matrix through scipy and converting the slice to
    CSC (about 0.15 ms and 0.1 ms a time on a 2-core machine, twice per request)."""

    n: int  # the number of rows
    place: np.ndarray  # (nnz,) each entry's place among the rows
    columns: np.ndarray  # (nnz,)
    values: np.ndarray  # (nnz,)

    @classmethod
    def of(cls, matrix: sp.csr_matrix, rows: np.ndarray) -> RowEntries:
        rows = np.asarray(rows, dtype=np.int64)
        starts = matrix.indptr[rows]
        lengths = matrix.indptr[rows + 1] - starts
        # each entry's position in the matrix's arrays: its row's start, plus its rank within the row
        before = np.cumsum(lengths) - lengths
        positions = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - before, lengths)
        place = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
        return cls(len(rows), place, matrix.indices[positions], matrix.data[positions])

    def weighted_sum(self, weights: np.ndarray, size: int) -> np.ndarray:
        """``matrix[rows].T @ weights``: the rows weighted and added, dense (size,) float32."""
        total = np.bincount(self.columns, weights=self.values * weights[self.place], minlength=size)
        return total.astype(np.float32)

    def columns_of(self, js: np.ndarray) -> np.ndarray:
        """``matrix[rows][:, js]`` as a dense (n, len(js)) array for distinct columns ``js``, the entries
        matched to them in one pass (a row holds a column at most once in a canonical matrix, as the model's
        are)."""
        out = np.zeros((self.n, len(js)), dtype=self.values.dtype)
        if not len(js) or not len(self.columns):
            return out
        order = np.argsort(js, kind="stable")
        ordered = js[order]
        at = np.minimum(np.searchsorted(ordered, self.columns), len(js) - 1)
        hit = ordered[at] == self.columns
        out[self.place[hit], order[at[hit]]] = self.values[hit]
        return out


def _scale(values: np.ndarray) -> float:
    top = float(np.abs(values).max()) if len(values) else 0.0
    return top if top > 0 else 1.0


# --- fitting ----------------------------------------------------------------------------------------------


def _components(
    train: list[ranking.Interaction], catalogue: Catalogue, config: HybridConfig, lam: float, decay: float
) -> HybridModel:
    """Every part of the model but the weights, fitted on ``train``."""
    items = _order(train, catalogue)
    collab_items = items[: len({i for _, i, _, _ in train})]
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
    rising = _rising(train, collab_items, config.rising_days) if config.rising_days else None
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
        weights={
            "collab": 1.0,
            "text": 0.0,
            "popularity": 0.0,
            "trend": 0.0,
            "sequence": 0.0,
            "tower": 0.0,
            "rising": 0.0,
            "boost": config.boost_weight,
        },
        setting={"ease_lambda": lam, "decay_days": decay},
        sequence=_sequence(train, index, len(collab_items), config) if config.sequence_window else None,
        rising=None if rising is None else _pad(rising, len(items)),
    )


def _rising(train: list[ranking.Interaction], items: list[str], days: float) -> np.ndarray:
    """(len(items),) float32: each item's weighted events in the last ``days`` days before the newest event
    against what its rate over all the time before them predicts for ``days`` days, as a Poisson z-score
    clipped at 0 (only rising items score), divided by the largest. 0 everywhere when the events span no
    more than ``days`` (no longer run to compare with)."""
    times = np.fromiter((t for *_, t in train), dtype=np.float64, count=len(train))
    newest, oldest = float(times.max()), float(times.min())
    longer_days = (newest - oldest) / 86400 - days
    if longer_days <= 0:
        return np.zeros(len(items), dtype=np.float32)
    index = {i: n for n, i in enumerate(items)}
    rows = np.fromiter((index[i] for _, i, _, _ in train), dtype=np.int64, count=len(train))
    weights = np.fromiter((w for _, _, w, _ in train), dtype=np.float64, count=len(train))
    recent_mask = times > newest - days * 86400
    recent = np.bincount(rows[recent_mask], weights[recent_mask], minlength=len(items))
    before = np.bincount(rows[~recent_mask], weights[~recent_mask], minlength=len(items))
    expected = before * days / longer_days
    out = np.maximum((recent - expected) / np.sqrt(expected + 1.0), 0.0)
    top = out.max() if len(out) else 0.0
    return (out / top if top > 0 else out).astype(np.float32)


def _sequence(
    train: list[ranking.Interaction], index: dict[str, int], n: int, config: HybridConfig
) -> sp.csr_matrix:
    """Item -> the items the same users took up within ``sequence_window`` events after it (each user's
    items in time order, an item counted at its first event), rows normalised to sum 1, pruned to the
    ``neighbours`` largest per row."""
    firsts: dict[str, dict[int, float]] = defaultdict(dict)
    for user, item, _, when in train:  # ``train`` is any order: keep each item's first time per user
        i = index[item]
        seen = firsts[user]
        if i not in seen or when < seen[i]:
            seen[i] = when
    sources, targets = [], []
    for seen in firsts.values():
        order = np.array(sorted(seen, key=lambda i: (seen[i], i)), dtype=np.int64)
        for step in range(1, min(config.sequence_window, len(order) - 1) + 1):
            sources.append(order[:-step])
            targets.append(order[step:])
    if not sources:
        return sp.csr_matrix((n, n), dtype=np.float32)
    rows, cols = np.concatenate(sources), np.concatenate(targets)
    counts = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(n, n))
    counts.sum_duplicates()
    totals = np.asarray(counts.sum(axis=1)).ravel()
    counts = sp.diags(1.0 / np.maximum(totals, 1.0)).astype(np.float32) @ counts
    return _prune_sparse(counts.tocsr(), config.neighbours)


def _prune_sparse(matrix: sp.csr_matrix, keep: int) -> sp.csr_matrix:
    """Keep the ``keep`` largest entries of each row of a sparse matrix."""
    data, indices, indptr = [], [], [0]
    for r in range(matrix.shape[0]):
        start, end = matrix.indptr[r], matrix.indptr[r + 1]
        values, columns = matrix.data[start:end], matrix.indices[start:end]
        if len(values) > keep:
            top = np.argpartition(-values, keep - 1)[:keep]
            values, columns = values[top], columns[top]
        data.append(values)
        indices.append(columns)
        indptr.append(indptr[-1] + len(values))
    return sp.csr_matrix(
        (np.concatenate(data).astype(np.float32), np.concatenate(indices), np.array(indptr)),
        shape=matrix.shape,
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
    """The events before the validation cut, and the users' new items after it (a sample of users).
    Histories are most recent first, as serving reads them."""
    if config.validation == "user":
        return _user_split(train, config)
    times = [t for *_, t in train]
    newest, oldest = max(times), min(times)
    cut = newest - min(config.validation_days * 86400, 0.25 * (newest - oldest))
    before = [row for row in train if row[3] < cut]
    history = _histories(before)
    after: dict[str, set[str]] = defaultdict(set)
    for user, item, _, when in train:
        if when >= cut and user in history and item not in history[user]:
            after[user].add(item)
    return before, _sample(history, after, config)


def _user_split(
    train: list[ranking.Interaction], config: HybridConfig
) -> tuple[list[ranking.Interaction], _Validation]:
    """Each user's last ``validation_share`` of items (by their first event) held out: the events before
    the user's own cut are the training part."""
    firsts: dict[str, dict[str, float]] = defaultdict(dict)
    for user, item, _, when in train:
        seen = firsts[user]
        seen[item] = min(seen.get(item, when), when)
    cuts: dict[str, float] = {}
    after: dict[str, set[str]] = {}
    for user, seen in firsts.items():
        order = sorted(seen, key=lambda i: (seen[i], i))
        held = math.ceil(config.validation_share * len(order)) if len(order) >= 2 else 0
        if held:
            cuts[user] = seen[order[-held]]
            after[user] = set(order[-held:])
    before = [row for row in train if row[3] < cuts.get(row[0], math.inf)]
    history = _histories(before)
    return before, _sample(history, {u: t for u, t in after.items() if u in history}, config)


def _histories(rows: list[ranking.Interaction]) -> dict[str, dict[str, float]]:
    """Each user's weighted items, most recent first."""
    latest: dict[str, dict[str, float]] = defaultdict(dict)
    totals: dict[str, dict[str, float]] = defaultdict(dict)
    for user, item, weight, when in rows:
        totals[user][item] = totals[user].get(item, 0.0) + weight
        latest[user][item] = max(latest[user].get(item, when), when)
    return {
        user: {i: totals[user][i] for i in sorted(seen, key=lambda i: (-seen[i], i))}
        for user, seen in latest.items()
    }


def _sample(
    history: dict[str, dict[str, float]], after: dict[str, set[str]], config: HybridConfig
) -> _Validation:
    users = sorted(u for u in after if after[u])
    rng = np.random.default_rng(config.seed)
    if len(users) > config.validation_users:
        users = sorted(rng.choice(users, config.validation_users, replace=False).tolist())
    return _Validation([history[u] for u in users], [after[u] for u in users])


def _features(model: HybridModel, val: _Validation) -> dict[str, np.ndarray]:
    """(users, n_items) per-user scaled features of the validation users; own items set to -inf later."""
    n = len(model.items)
    names = ("collab", "text", "sequence", "tower")
    out = {name: np.zeros((len(val.histories), n), dtype=np.float32) for name in names}
    for u, history in enumerate(val.histories):
        collab, cmax, text, tmax, _ = model._parts(model.vector(history), history)
        out["collab"][u], out["text"][u] = collab / cmax, text / tmax
        sequence = model.sequence_scores(history)
        out["sequence"][u] = sequence / _scale(sequence)
        if model.tower is not None:
            tower = model.tower.scores(history)
            out["tower"][u] = tower / _scale(tower)
    return out


def _ndcg(scores: np.ndarray, own: list[np.ndarray], targets: list[np.ndarray], k: int = 10) -> float:
    total = 0.0
    for u in range(scores.shape[0]):
        row = scores[u].copy()
        row[own[u]] = -np.inf
        if row.size > k:
            top = np.argpartition(-row, k)[:k]
            top = top[np.argsort(-row[top], kind="stable")]
        else:  # a catalogue of k items or fewer: all of them, ranked
            top = np.argsort(-row, kind="stable")
        hits = np.isin(top, targets[u])
        dcg = float((hits / np.log2(np.arange(2, len(top) + 2))).sum())
        ideal = float((1 / np.log2(np.arange(2, min(k, len(targets[u])) + 2))).sum())
        total += dcg / ideal
    return total / max(1, scores.shape[0])


def _fit_weights(model: HybridModel, val: _Validation) -> tuple[dict[str, float], float]:
    """Coordinate ascent over ``GRID`` for the learned weights; returns them and the validation NDCG@10."""
    feats = _features(model, val)
    rising = model.rising if model.rising is not None else np.zeros(len(model.items), np.float32)
    glob = {"popularity": model.popularity, "trend": model.trend, "rising": rising}
    own = [np.array([model.index[i] for i in h if i in model.index], dtype=np.int64) for h in val.histories]
    targets = [np.array([model.index[i] for i in t if i in model.index], dtype=np.int64) for t in val.targets]
    weights = {"text": 0.0, "popularity": 0.0, "trend": 0.0, "sequence": 0.0, "tower": 0.0, "rising": 0.0}
    absent = {
        "sequence": model.sequence is None,
        "tower": model.tower is None,
        "rising": model.rising is None,
    }
    learned = tuple(name for name in LEARNED if not absent.get(name))
    boost = model.weights["boost"] * model.boost

    def score(w: dict[str, float]) -> float:
        total = feats["collab"] + w["text"] * feats["text"] + boost
        total = total + w["popularity"] * glob["popularity"] + w["trend"] * glob["trend"]
        if w["sequence"]:
            total = total + w["sequence"] * feats["sequence"]
        if w["tower"]:
            total = total + w["tower"] * feats["tower"]
        if w["rising"]:
            total = total + w["rising"] * glob["rising"]
        return _ndcg(total, own, targets)

    best = score(weights)
    for _ in range(ROUNDS):
        for name in learned:
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
    choice: tuple[float, dict[str, float], float, float, float] | None = None
    tower: twotower.TowerModel | None = None
    if len(val.histories) >= MIN_VALIDATION_USERS and before:
        for lam in config.ease_lambdas:
            for decay in config.decay_days:
                part = _components(before, catalogue, config, lam, decay)
                if config.tower_epochs and tower is None:  # one tower for every setting (same items)
                    tower = _tower(part, before, config, val=val, progress=progress)
                part.tower = tower
                for history_decay in config.history_decays:
                    part.setting["history_decay"] = history_decay
                    weights, ndcg = _fit_weights(part, val)
                    if progress is not None:
                        progress(
                            f"lambda {lam:g}, decay {decay:g} days, history decay {history_decay:g}: "
                            f"validation NDCG@10 {ndcg:.4f}"
                        )
                    if choice is None or ndcg > choice[0]:
                        choice = (ndcg, weights, lam, decay, history_decay)
    if choice is None:  # too few users to fit on: the grid's first setting, and a little of everything
        model = _components(train, catalogue, config, *_first(config))
        model.weights.update(FALLBACK_WEIGHTS)
        model.validation = {"users": float(len(val.histories))}
        return model
    ndcg, weights, lam, decay, history_decay = choice
    model = _components(train, catalogue, config, lam, decay)
    model.setting["history_decay"] = history_decay
    model.weights.update(weights)
    model.validation = {"ndcg@10": ndcg, "users": float(len(val.histories))}
    if tower is not None:
        model.setting["tower_epochs"] = float(tower.epochs)
        model.validation["tower_ndcg@10"] = tower.validation.get("ndcg@10", 0.0)
        if weights.get("tower"):  # fitted again on every training event, for the epochs validation chose
            model.tower = _tower(model, train, config, epochs=tower.epochs)
    return model


def _tower(
    model: HybridModel,
    train: list[ranking.Interaction],
    config: HybridConfig,
    *,
    val: _Validation | None = None,
    epochs: int | None = None,
    progress=None,
) -> twotower.TowerModel:
    """The two-tower model over ``model``'s items and text vectors: with ``val``, early stopping on it."""
    validation = None if val is None else twotower.Validation(val.histories, val.targets)
    return twotower.train(
        config=config.tower(),
        events=train,
        items=model.items,
        text=model.vectors,
        validation=validation,
        epochs=epochs,
        progress=progress,
    )


def fit_tower(
    *, config: HybridConfig, train: list[ranking.Interaction], catalogue: Catalogue, progress=None
) -> twotower.TowerModel:
    """The two-tower model alone, over every catalogue item: its epochs chosen on the validation split of
    ``train`` (as ``fit`` chooses), then fitted again on all of ``train`` for that many epochs."""
    config.validate()
    if not config.tower_epochs:
        raise ValueError("tower_epochs must be at least 1 for the two-tower model")
    if not train:
        raise ValueError("there are no events to train on")
    before, val = time_split(train, config)
    epochs = None
    if len(val.histories) >= MIN_VALIDATION_USERS and before:
        items = _order(before, catalogue)
        chosen = twotower.train(
            config=config.tower(),
            events=before,
            items=items,
            text=_vectors(items, catalogue),
            validation=twotower.Validation(val.histories, val.targets),
            progress=progress,
        )
        epochs = chosen.epochs
    items = _order(train, catalogue)
    tower = twotower.train(
        config=config.tower(),
        events=train,
        items=items,
        text=_vectors(items, catalogue),
        epochs=epochs or config.tower_epochs,
    )
    if epochs:
        tower.validation = chosen.validation
    return tower


def _order(train: list[ranking.Interaction], catalogue: Catalogue) -> list[str]:
    """The items with events (sorted), then the catalogue's others: ``_components``' order."""
    known = sorted({i for _, i, _, _ in train})
    seen = set(known)
    return known + [i for i in catalogue.items if i not in seen]


def _first(config: HybridConfig) -> tuple[float, float]:
    return config.ease_lambdas[0], config.decay_days[0]


def fit_like(*, model: HybridModel, train: list[ranking.Interaction], catalogue: Catalogue) -> HybridModel:
    """``model``'s setting and weights, fitted on ``train`` (no validation)."""
    fitted = _components(
        train, catalogue, model.config, model.setting["ease_lambda"], model.setting["decay_days"]
    )
    fitted.weights = dict(model.weights)
    fitted.setting["history_decay"] = model.setting.get("history_decay", 1.0)
    fitted.validation = dict(model.validation)
    if "tower_epochs" in model.setting:  # what validation chose, even when it gave the tower no weight
        fitted.setting["tower_epochs"] = model.setting["tower_epochs"]
    if model.tower is not None:
        fitted.tower = _tower(fitted, train, model.config, epochs=model.tower.epochs)
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
        *((("rising", model.rising),) if model.rising is not None else ()),
        ("collab_data", model.collab.data.astype(np.float32)),
        ("collab_indices", model.collab.indices.astype(np.int32)),
        ("collab_indptr", model.collab.indptr.astype(np.int64)),
    )
    if model.sequence is not None:
        arrays = (
            *arrays,
            ("sequence_data", model.sequence.data.astype(np.float32)),
            ("sequence_indices", model.sequence.indices.astype(np.int32)),
            ("sequence_indptr", model.sequence.indptr.astype(np.int64)),
        )
    for name, values in arrays:
        np.save(folder / f"{prefix}{name}.npy", values, allow_pickle=False)
    if model.tower is not None:
        twotower.save(model.tower, folder, prefix)
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
    sequence = None
    if (folder / f"{prefix}sequence_data.npy").exists():  # models fitted before the sequence have none
        sequence = sp.csr_matrix(
            (array("sequence_data"), array("sequence_indices"), array("sequence_indptr")), shape=(n, n)
        )
    evaluation = None
    if not prefix and (folder / "evaluation_hybrid.json").exists():
        evaluation = load(folder, prefix="evaluation_")
    rising = array("rising") if (folder / f"{prefix}rising.npy").exists() else None  # older models have none
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
        sequence=sequence,
        tower=twotower.load(folder, meta["items"], prefix),  # None for models fitted before it
        rising=rising,
    )


def is_hybrid(folder: Path) -> bool:
    return (folder / "hybrid.json").exists()
