"""One training run's inputs and bookkeeping (:class:`Job`), and scoring a model on its validation rows.

Shared by the stages in ``core.ml.loop`` (embedding, head, lexical member) and ``core.ml.finetune``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from core.ml.evaluate import compute_metrics
from core.ml.head import class_weights
from core.ml.modeling import TextClassifier, predict_proba
from core.ml.train import (
    Progress,
    TrainConfig,
    now,
)


@dataclass
class Job:
    """Everything one training run needs, plus its mutable bookkeeping."""

    config: TrainConfig
    labels: list[str]
    train_texts: list[str]
    train_targets: torch.Tensor  # (N,) int64
    val_texts: list[str]
    val_gold: list[str]
    tokenizer: object
    device: str
    progress: Callable[[Progress], None]
    should_stop: Callable[[], bool]
    started: float = field(default_factory=now)
    history: list[dict[str, float | None]] = field(default_factory=list)

    def out_of_time(self) -> bool:
        budget = self.config.time_budget_s
        return budget is not None and now() - self.started > budget

    def weights(self) -> torch.Tensor | None:
        if not self.config.class_weights:
            return None
        return class_weights(self.train_targets, len(self.labels))

    def validation_proba(self, model: TextClassifier) -> torch.Tensor:
        """Class probabilities (N_val, n_labels) of ``model`` on the validation texts."""
        return predict_proba(
            model,
            self.tokenizer,  # type: ignore[arg-type]
            self.val_texts,
            max_length=self.config.max_length,
            batch_size=self.config.eval_batch_size,
            device=self.device,
        )


def autocast(device: str) -> contextlib.AbstractContextManager[object]:
    if device == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def validation_score(model: TextClassifier, job: Job) -> float | None:
    """The configured metric on the validation rows, or None without validation rows."""
    if not job.val_texts:
        return None
    model.eval()
    with autocast(job.device):
        probs = job.validation_proba(model)
    predicted = [job.labels[i] for i in probs.argmax(dim=-1).tolist()]
    confidences = probs.max(dim=-1).values.tolist()
    metrics = compute_metrics(
        gold=job.val_gold, predicted=predicted, confidences=confidences, labels=job.labels
    )
    return metrics.macro_f1 if job.config.metric == "macro_f1" else metrics.accuracy
