"""Training text classifiers: the public entry point (its config and result types are ``core.ml.types``).

``train_classifier`` trains every classification task. Methods:
- "head": frozen encoder embeddings + a logistic head (seconds on CPU: a new tenant gets a model at once);
- "lora": LoRA adapters on query/key/value/dense + the head, merged into the encoder when training ends
  (default);
- "full": every weight trains.

Fine-tuning runs in the one training loop (``core.ml.loop``): seeded, classes weighted by inverse
frequency, early stopping on the validation metric, bf16 autocast on CUDA, :class:`Progress` reports, a time
budget and ``TrainingCancelled``. The torch code is ``core.ml.classifier``; this module imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from core.ml.errors import MLError, UnknownLabelError
from core.ml.runtime import Runtime
from core.ml.types import (
    DEFAULT_LEARNING_RATE,
    LORA_TARGETS,
    METHODS,
    METRICS,
    Progress,
    TrainConfig,
    TrainStats,
)

if TYPE_CHECKING:
    from core.ml.classifier import TrainedClassifier

__all__ = [
    "DEFAULT_LEARNING_RATE",
    "LORA_TARGETS",
    "METHODS",
    "METRICS",
    "Progress",
    "TrainConfig",
    "TrainStats",
    "train_classifier",
]


def _labels(train: Sequence[tuple[str, str]], validation: Sequence[tuple[str, str]]) -> list[str]:
    labels = sorted({label for _, label in train})
    if len(labels) < 2:
        raise MLError("Training needs at least two different labels.")
    unknown = sorted({label for _, label in validation} - set(labels))
    if unknown:
        raise UnknownLabelError(
            f"Validation labels missing from the training data: {', '.join(unknown[:10])}."
        )
    return labels


def train_classifier(
    *,
    config: TrainConfig,
    train: Sequence[tuple[str, str]],
    validation: Sequence[tuple[str, str]],
    runtime: Runtime,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainedClassifier:
    """Train on ``(text, label)`` rows; early-stops on ``validation`` unless it is empty."""
    config.validate()
    labels = _labels(train, validation)
    from core.ml.classifier import run_training  # torch loads when training starts, not with this module

    return run_training(
        config=config,
        labels=labels,
        train=train,
        validation=validation,
        runtime=runtime,
        progress=progress or (lambda _p: None),
        should_stop=should_stop or (lambda: False),
    )
