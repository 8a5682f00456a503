"""Out-of-scope detection: is a text about one of the model's labels at all?

A classifier's top probability compares its labels with each other; a question about something else can
still land on one of them with a high probability. How close the text's embedding lies to the training rows
says what the probability cannot: the mean cosine similarity to its ``NEIGHBOURS`` nearest training rows (a
kNN distance in the embedding space; Sun et al., 2022). The score adds the two, each standardised on held-out
in-scope rows, ``NEAR_WEIGHT`` for the similarity and the rest for the log of the top probability (both
chosen on CLINC150's validation and out-of-scope training rows, never its test split: BENCHMARKS.md section
17, where the pair beat either alone, Mahalanobis distance to class means and energy).

``in_scope`` maps the score into [0, 1] for a threshold to read like a probability: 0.5 where the lowest
``HANDOFF_QUANTILE`` of the held-out in-scope rows' scores end, ``MEDIAN_IN_SCOPE`` at their median (a
logistic curve through both points). The ranking, and so which texts a threshold hands off first, is the
score's; the map only sets the scale. It needs no out-of-scope examples: a tenant rarely has any.

Fitted after training: the bank is the training rows' unit embeddings (float16, at most ``MAX_BANK`` rows, a
seeded sample beyond), the standardisation and the map come from the validation rows (the training rows, each
without itself, when there are none). Stored without pickle: the bank in ``ood.safetensors``, scalars in the
manifest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from core.ml.errors import ArtifactError, MLError

WEIGHTS_FILE = "ood.safetensors"
METHOD = "knn-cosine+top-probability"
NEIGHBOURS = 10
NEAR_WEIGHT = 0.7  # of the standardised similarity in the score; the rest goes to log(top probability)
HANDOFF_QUANTILE = 0.05  # in_scope is 0.5 where this share of held-out in-scope rows score lower
MEDIAN_IN_SCOPE = 0.9  # in_scope of the held-out rows' median score
MAX_BANK = 50_000
CHUNK = 1024  # query rows per similarity block (bounds memory at CHUNK x bank floats)
EPS = 1e-12


@dataclass(frozen=True)
class Calibration:
    """Standardisation of the two parts (held-out means and spreads) and the logistic map to ``in_scope``."""

    near_mean: float
    near_std: float
    logp_mean: float
    logp_std: float
    centre: float  # score at which in_scope = 0.5
    slope: float  # in_scope = sigmoid(slope * (score - centre))
    neighbours: int = NEIGHBOURS
    near_weight: float = NEAR_WEIGHT


PLAIN = Calibration(0.0, 1.0, 0.0, 1.0, 0.0, 1.0)


@dataclass
class OutOfScope:
    """The training rows' unit embeddings (the bank) and the calibration."""

    bank: np.ndarray  # (M, H) float16, unit rows
    calibration: Calibration
    # the bank as float32 (exactly the float16 values), made once: converting it per call cost more than the
    # similarity product itself (a chat message is one call)
    _bank32: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._bank32 = np.asarray(self.bank, dtype=np.float32)

    def nearness(self, embeddings: np.ndarray, *, leave_one_out: bool = False) -> np.ndarray:
        """(N,) mean cosine similarity of each (N, H) unit embedding to its nearest bank rows; with
        ``leave_one_out`` (the embeddings are the bank's own rows) each row's best match (itself) is
        skipped."""
        k = min(self.calibration.neighbours, len(self.bank) - int(leave_one_out))
        if k < 1:
            raise MLError("The out-of-scope model needs at least two training rows.")
        bank = self._bank32
        x = np.asarray(embeddings, dtype=np.float32)
        out = np.empty(len(x))
        for begin in range(0, len(x), CHUNK):
            sims = x[begin : begin + CHUNK] @ bank.T  # (B, M)
            width = k + int(leave_one_out)
            top = np.sort(np.partition(sims, -width, axis=1)[:, -width:], axis=1)  # ascending
            out[begin : begin + CHUNK] = top[:, :k].mean(1) if leave_one_out else top.mean(1)
        return out

    def score(self, embeddings: np.ndarray, top_probability: np.ndarray) -> np.ndarray:
        """(N,) the combined score (higher: more like the training rows)."""
        return _combined(self.calibration, self.nearness(embeddings), np.asarray(top_probability))

    def in_scope(self, embeddings: np.ndarray, top_probability: np.ndarray) -> np.ndarray:
        """(N,) the score mapped into [0, 1] (the module docstring says how)."""
        c = self.calibration
        return _sigmoid(c.slope * (self.score(embeddings, top_probability) - c.centre))

    def manifest(self) -> dict[str, Any]:
        return {"method": METHOD, "bank_rows": len(self.bank), **asdict(self.calibration)}

    def save(self, folder: Path) -> None:
        save_file(
            {"bank": np.ascontiguousarray(self.bank, dtype=np.float16)}, str(Path(folder) / WEIGHTS_FILE)
        )

    @classmethod
    def load(cls, folder: Path, manifest: dict[str, Any]) -> OutOfScope:
        if manifest.get("method") != METHOD:
            raise ArtifactError(f"Unknown out-of-scope method {manifest.get('method')!r}.")
        try:
            bank = load_file(str(Path(folder) / WEIGHTS_FILE))["bank"]
            scalars: dict[str, Any] = {k: float(manifest[k]) for k in Calibration.__dataclass_fields__}
            calibration = Calibration(**{**scalars, "neighbours": int(manifest["neighbours"])})
        except (OSError, KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"Cannot load the out-of-scope model: {exc}.")
        return cls(bank, calibration)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def _combined(c: Calibration, nearness: np.ndarray, top_probability: np.ndarray) -> np.ndarray:
    logp = np.log(np.clip(top_probability, EPS, 1.0))
    near = (nearness - c.near_mean) / c.near_std
    sure = (logp - c.logp_mean) / c.logp_std
    return c.near_weight * near + (1.0 - c.near_weight) * sure


def _bank(features: np.ndarray, seed: int) -> np.ndarray:
    x = np.asarray(features, dtype=np.float32)
    if len(x) > MAX_BANK:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), MAX_BANK, replace=False))]
    return x.astype(np.float16)


def fit_out_of_scope(
    *,
    train: np.ndarray,  # (N, H) unit embeddings of the training rows
    held_out: tuple[np.ndarray, np.ndarray] | None,  # (M, H) unit embeddings, (M, K) probabilities
    train_proba: np.ndarray | None = None,  # (N, K): calibrates on the training rows when held_out is None
    seed: int = 13,
    neighbours: int = NEIGHBOURS,
    near_weight: float = NEAR_WEIGHT,
) -> OutOfScope:
    """The bank from the training rows, the calibration from held-out in-scope rows (see the module)."""
    if len(train) < 2:
        raise MLError("The out-of-scope model needs at least two training rows.")
    probe = OutOfScope(_bank(train, seed), replace(PLAIN, neighbours=neighbours))
    if held_out is not None and len(held_out[0]):
        nearness, top = probe.nearness(held_out[0]), np.asarray(held_out[1]).max(1)
    elif train_proba is not None:
        nearness, top = probe.nearness(probe.bank, leave_one_out=True), np.asarray(train_proba).max(1)
    else:
        raise MLError("The out-of-scope model needs held-out rows or the training rows' probabilities.")
    logp = np.log(np.clip(top, EPS, 1.0))
    standard = Calibration(
        near_mean=float(nearness.mean()),
        near_std=float(nearness.std()) or 1.0,
        logp_mean=float(logp.mean()),
        logp_std=float(logp.std()) or 1.0,
        centre=0.0,
        slope=1.0,
        neighbours=neighbours,
        near_weight=near_weight,
    )
    score = _combined(standard, nearness, top)
    centre, median = float(np.quantile(score, HANDOFF_QUANTILE)), float(np.median(score))
    odds = np.log(MEDIAN_IN_SCOPE / (1.0 - MEDIAN_IN_SCOPE))
    slope = odds / (median - centre) if median - centre > EPS else 1.0
    calibration = Calibration(**{**asdict(standard), "centre": centre, "slope": float(slope)})
    return OutOfScope(probe.bank, calibration)
