"""The ML runtime's configs and results: frozen dataclasses, no torch (importing this module is cheap).

``TrainConfig`` / ``TrainStats`` belong to the classifier, ``EmbedConfig`` / ``EmbedStats`` to the embedder;
both configs hand the shared training loop (``core.ml.loop``) its :class:`LoopSettings`. ``Progress`` is
what every training run reports.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from core.ml import textforms
from core.ml.errors import MLError

METHODS = ("head", "lora", "full")
METRICS = ("macro_f1", "accuracy")
DEFAULT_LEARNING_RATE = {"head": 0.0, "lora": 5e-4, "full": 5e-5}
LORA_TARGETS = ("query", "key", "value", "q", "k", "v", "o", "dense")  # BERT and MPNet names
EMBED_METHODS = ("lora", "full")
EMBED_WARMUP_RATIO = 0.1
EMBED_WEIGHT_DECAY = 0.01


@dataclass(frozen=True)
class LoopSettings:
    """What the shared fine-tuning loop reads: optimiser and schedule, LoRA, stopping, budget, reports."""

    method: str  # "lora" (adapters through peft, merged at the end) or "full"
    epochs: int
    learning_rate: float
    weight_decay: float
    warmup_ratio: float
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    seed: int
    patience: int  # evaluations without improvement before stopping; 0 disables early stopping
    time_budget_s: float | None
    progress_every: int  # steps between progress reports
    evals_per_epoch: int = 1  # evaluation points within an epoch (each replaces that step's report)
    # Evaluate at each epoch's end instead, reported on its own ("Epoch done" without validation rows).
    epoch_reports: bool = False


def _check(checks: list[tuple[bool, str]], what: str) -> None:
    for ok, message in checks:
        if not ok:
            raise MLError(f"Invalid {what} config: {message}.")


@dataclass(frozen=True)
class TrainConfig:
    """A classifier's hyper-parameters. ``learning_rate=None`` picks the method's default (LoRA 5e-4, full
    5e-5)."""

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
    # fit the out-of-scope model (core.ml.ood): free for "head", one more embedding pass after a fine-tune
    ood: bool = True
    # fit a temperature on the validation rows after training (``core.ml.calibration``); stored with the
    # version and applied to its probabilities (argmax, so accuracy, unchanged)
    calibrate: bool = False
    # the registered form the model reads texts in (``core.ml.textforms``; "": as given): applied to every
    # training row and, from the manifest, to every text the version is asked about
    text_form: str = ""

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
            (isinstance(self.calibrate, bool), "calibrate must be true or false"),
            (
                isinstance(self.text_form, str) and textforms.known(self.text_form),
                f"text_form {self.text_form!r} is not a registered text form",
            ),
        ]
        _check(checks, "training")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "learning_rate": self.effective_learning_rate}

    def loop_settings(self) -> LoopSettings:
        return LoopSettings(
            method=self.method,
            epochs=self.epochs,
            learning_rate=self.effective_learning_rate,
            weight_decay=self.weight_decay,
            warmup_ratio=self.warmup_ratio,
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=self.lora_dropout,
            seed=self.seed,
            patience=self.patience,
            time_budget_s=self.time_budget_s,
            progress_every=self.progress_every,
            evals_per_epoch=self.evals_per_epoch,
        )


@dataclass(frozen=True)
class EmbedConfig:
    """An embedder's hyper-parameters. ``learning_rate=None`` picks the method's default (LoRA 5e-4, full
    5e-5)."""

    method: str = "lora"
    epochs: int = 1
    learning_rate: float | None = None
    batch_size: int = 32
    lora_r: int = 8
    lora_alpha: int = 16
    max_length: int = 64
    seed: int = 13
    temperature: float = 0.05
    time_budget_s: float | None = None
    progress_every: int = 10  # steps between progress reports
    patience: int = 0  # epochs without a better validation MRR before stopping; 0 disables early stopping

    @property
    def effective_learning_rate(self) -> float:
        return DEFAULT_LEARNING_RATE[self.method] if self.learning_rate is None else self.learning_rate

    def validate(self) -> None:
        """Raise ``MLError`` with a user-facing message when a value is out of range."""
        if self.method not in EMBED_METHODS:
            raise MLError(f"Invalid embedding config: method must be one of {', '.join(EMBED_METHODS)}.")
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            (self.batch_size >= 2, "batch_size must be at least 2 (negatives come from the batch)"),
            (self.effective_learning_rate > 0, "learning_rate must be positive"),
            (self.lora_r >= 1 and self.lora_alpha >= 1, "lora_r and lora_alpha must be at least 1"),
            (8 <= self.max_length <= 512, "max_length must be between 8 and 512"),
            (0 < self.temperature <= 1, "temperature must be in (0, 1]"),
            (self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s must be positive"),
            (self.progress_every >= 1 and self.patience >= 0, "progress_every >= 1 and patience >= 0"),
        ]
        _check(checks, "embedding")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "learning_rate": self.effective_learning_rate}

    def loop_settings(self) -> LoopSettings:
        return LoopSettings(
            method=self.method,
            epochs=self.epochs,
            learning_rate=self.effective_learning_rate,
            weight_decay=EMBED_WEIGHT_DECAY,
            warmup_ratio=EMBED_WARMUP_RATIO,
            lora_r=self.lora_r,
            lora_alpha=self.lora_alpha,
            lora_dropout=0.0,
            seed=self.seed,
            patience=self.patience,
            time_budget_s=self.time_budget_s,
            progress_every=self.progress_every,
            epoch_reports=True,
        )


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


@dataclass(frozen=True)
class EmbedStats:
    """What happened; ``stopped_reason`` is completed, early_stopping or time_budget."""

    method: str
    train_pairs: int
    validation_pairs: int
    steps: int
    epochs_completed: float
    best_val_mrr: float | None
    best_step: int | None
    train_seconds: float
    stopped_reason: str
    trainable_parameters: int
    history: tuple[dict[str, float | None], ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "history": [dict(h) for h in self.history]}
