"""The prediction value returned by every model and predictor, and how it is built from probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Prediction:
    """Top label, the full probability distribution over labels, and the model version that produced it."""

    label: str
    probabilities: dict[str, float]
    version: str


class SupportsPredict(Protocol):
    """Anything that turns texts into predictions: a trained model in memory or a loaded predictor."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...


def to_predictions(probs: torch.Tensor, labels: Sequence[str], version: str) -> list[Prediction]:
    """Turn (N, n_labels) probabilities into predictions; ties go to the first label."""
    rows = probs.double().tolist()
    out = []
    for row in rows:
        best = max(range(len(row)), key=row.__getitem__)
        out.append(Prediction(labels[best], dict(zip(labels, row, strict=True)), version))
    return out
