"""The prediction value returned by every model and predictor, and how it is built from probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Prediction:
    """Top label, the full probability distribution over labels, and the model version that produced it.

    ``in_scope``: with a version that has an out-of-scope model (``core.ml.ood``), how much the text looks
    like one of the labels' questions, in [0, 1] (0.5: as unlike them as the least typical 5% of held-out
    questions); None for versions without one."""

    label: str
    probabilities: dict[str, float]
    version: str
    in_scope: float | None = None

    @property
    def confidence(self) -> float:
        """What a threshold rule compares: the top probability, capped by ``in_scope`` when the version has
        one (an answer needs a sure label and a question like the training ones; BENCHMARKS.md section 17)."""
        top = float(self.probabilities[self.label])
        return top if self.in_scope is None else min(top, float(self.in_scope))


class SupportsPredict(Protocol):
    """Anything that turns texts into predictions: a trained model in memory or a loaded predictor."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


def to_predictions(
    probs: torch.Tensor, labels: Sequence[str], version: str, in_scope: Sequence[float] | None = None
) -> list[Prediction]:
    """Turn (N, n_labels) probabilities (and N in-scope probabilities, when given) into predictions; ties go
    to the first label."""
    rows = probs.double().tolist()
    scopes = [None] * len(rows) if in_scope is None else [float(v) for v in in_scope]
    out = []
    for row, scope in zip(rows, scopes, strict=True):
        best = max(range(len(row)), key=row.__getitem__)
        out.append(Prediction(labels[best], dict(zip(labels, row, strict=True)), version, scope))
    return out
