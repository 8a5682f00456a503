"""Training text classifiers: the public entry point, its config and result types.

``train_classifier`` is the one training loop for every classification task. Methods:
- "head": frozen encoder embeddings + a logistic head (seconds on CPU: a new tenant gets a model at once);
- "lora": LoRA adapters on query/key/value/dense + the head, merged into the encoder when training ends
  (default);
- "full": every weight trains.

The loop is seeded, weights classes by inverse frequency, early-stops on the validation metric, uses bf16
autocast on CUDA, reports :class:`Progress`, honours a time budget and raises ``TrainingCancelled``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.ml.errors import MLError, TrainingCancelled, UnknownLabelError
from core.ml.runtime import Runtime

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from core.ml.lexical import LexicalModel
    from core.ml.modeling import TextClassifier
    from core.ml.predictions import Prediction

METHODS = ("head", "lora", "full")
METRICS = ("macro_f1", "accuracy")
DEFAULT_LEARNING_RATE = {"head": 0.0, "lora": 5e-4, "full": 5e-5}
LORA_TARGETS = ("query", "key", "value", "q", "k", "v", "o", "dense")  # BERT and MPNet names


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters. ``learning_rate=None`` picks the method's default (LoRA 5e-4, full 5e-5)."""

    method: str = "lora"
    epochs: int = 4
    learning_rate: float | None = None
    batch_size: int = 32
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    max_length: int = 128
    seed: int = 13
    patience: int = 2  # evaluations without improvement before stopping; 0 disables early stopping
    class_weights: bool = True
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    time_budget_s: float | None = None
    metric: str = "macro_f1"  # validation metric for early stopping and search
    label_smoothing: float = 0.0
    head_c: float | None = None  # inverse L2 strength of the logistic head; None = choose on validation
    head_warm_start: bool = True  # fit the head on frozen embeddings before fine-tuning
    evals_per_epoch: int = 1
    eval_batch_size: int = 64
    progress_every: int = 10  # steps between progress reports
    lexical: bool = False  # blend in a TF-IDF + logistic-regression model (weight chosen on validation)
    lexical_c: float = 10.0

    @property
    def effective_learning_rate(self) -> float:
        return DEFAULT_LEARNING_RATE[self.method] if self.learning_rate is None else self.learning_rate

    def validate(self) -> None:
        """Raise ``MLError`` with a user-facing message when a value is out of range."""
        if self.method not in METHODS:
            raise MLError(f"Invalid training config: method must be one of {', '.join(METHODS)}.")
        checks = [
            (self.metric in METRICS, f"metric must be one of {', '.join(METRICS)}"),
            (self.epochs >= 1 and self.batch_size >= 1, "epochs and batch_size must be at least 1"),
            (self.effective_learning_rate >= 0, "learning_rate must not be negative"),
            (
                self.lora_r >= 1 and 0 <= self.lora_dropout < 1,
                "lora_r must be >= 1 and lora_dropout in [0, 1)",
            ),
            (8 <= self.max_length <= 512, "max_length must be between 8 and 512"),
            (
                0 <= self.warmup_ratio < 1 and 0 <= self.label_smoothing < 1,
                "warmup_ratio/label_smoothing in [0, 1)",
            ),
            (self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s must be positive"),
            (self.evals_per_epoch >= 1 and self.progress_every >= 1, "evals_per_epoch/progress_every >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise MLError(f"Invalid training config: {message}.")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "learning_rate": self.effective_learning_rate}


@dataclass(frozen=True)
class Progress:
    """A progress report; ``epoch`` is fractional, ``loss`` a running mean since the last report."""

    step: int
    total_steps: int
    epoch: float
    loss: float | None
    val_metric: float | None
    eta_s: float | None
    message: str = ""


@dataclass(frozen=True)
class TrainStats:
    """What happened during training; ``stopped_reason`` is completed, early_stopping or time_budget."""

    method: str
    train_rows: int
    validation_rows: int
    n_labels: int
    steps: int
    epochs_completed: float
    best_val_metric: float | None
    best_step: int | None
    train_seconds: float
    stopped_reason: str
    head_c: float | None
    trainable_parameters: int
    history: tuple[dict[str, float | None], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "history": [dict(h) for h in self.history]}


@dataclass
class TrainedClassifier:
    """A trained model in memory: labels (index order), the merged model, its tokenizer, config and stats."""

    labels: list[str]
    model: TextClassifier
    tokenizer: PreTrainedTokenizerBase
    config: TrainConfig
    stats: TrainStats
    base_model: dict[str, str]
    device: str
    lexical: LexicalModel | None = None
    blend_weight: float = 1.0  # weight of the neural model when ``lexical`` is set

    def predict_proba(self, texts: Sequence[str]) -> torch.Tensor:
        from core.ml.lexical import blend
        from core.ml.modeling import predict_proba

        self.model.eval()
        kwargs = {"max_length": self.config.max_length, "batch_size": self.config.eval_batch_size}
        neural = predict_proba(self.model, self.tokenizer, texts, device=self.device, **kwargs)
        return blend(neural, self.lexical, self.blend_weight, texts)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        from core.ml.predictions import to_predictions

        return to_predictions(self.predict_proba(texts), self.labels, "unsaved")


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
    from core.ml.loop import run_training

    config.validate()
    labels = _labels(train, validation)
    return run_training(
        config=config,
        labels=labels,
        train=train,
        validation=validation,
        runtime=runtime,
        progress=progress or (lambda _p: None),
        should_stop=should_stop or (lambda: False),
    )


def check_cancel(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise TrainingCancelled("Training was cancelled.")


def now() -> float:
    return time.monotonic()
