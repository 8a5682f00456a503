"""Training a text classifier (torch code), behind ``core.ml.train.train_classifier``.

Stages: load the base encoder -> embed the training rows once and fit a logistic head (method "head", or the
warm start for "lora"/"full") -> fine-tune in the shared loop (``core.ml.loop``; this module supplies the
batches, the weighted cross-entropy and the validation metric) -> merge LoRA adapters -> optionally fit the
TF-IDF member and its blend weight (``core.ml.lexical``) -> fit the out-of-scope model on the final embeddings
(``core.ml.ood``; for method "head" the warm start's embeddings are the final ones, so it costs no pass).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from core.ml.calibration import apply_temperature, fit_temperature
from core.ml.evaluate import compute_metrics
from core.ml.head import class_weights, select_and_fit_head
from core.ml.lexical import LexicalModel, blend, choose_blend_weight, fit_lexical
from core.ml.loop import (
    Best,
    Meter,
    check_cancel,
    epoch_batches,
    fit,
    merged_encoder,
    now,
    start,
    trainable_encoder,
    trainable_parameters,
)
from core.ml.modeling import (
    TextClassifier,
    autocast,
    embed_texts,
    load_encoder,
    load_tokenizer,
    predict_proba,
    tokenize,
)
from core.ml.ood import OutOfScope, fit_out_of_scope
from core.ml.predictions import Prediction, to_predictions
from core.ml.runtime import Runtime, base_model_identity
from core.ml.textforms import in_form, text_form
from core.ml.types import Progress, TrainConfig, TrainStats

EMBED_CHUNK = 512  # rows embedded between cancellation checks


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
    ood: OutOfScope | None = None  # the out-of-scope model (``config.ood``)
    temperature: float = 1.0  # applied to the (blended) probabilities; 1 = uncalibrated

    def predict_proba(self, texts: Sequence[str]) -> torch.Tensor:
        texts = in_form(text_form(self.config.text_form), texts)
        self.model.eval()
        kwargs = {"max_length": self.config.max_length, "batch_size": self.config.eval_batch_size}
        neural = predict_proba(self.model, self.tokenizer, texts, device=self.device, **kwargs)
        return apply_temperature(blend(neural, self.lexical, self.blend_weight, texts), self.temperature)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if self.ood is None:
            return to_predictions(self.predict_proba(texts), self.labels, "unsaved")
        texts = in_form(text_form(self.config.text_form), texts)
        self.model.eval()
        kwargs = {"max_length": self.config.max_length, "batch_size": self.config.eval_batch_size}
        embeddings = embed_texts(self.model, self.tokenizer, texts, device=self.device, **kwargs)
        with torch.inference_mode():
            neural = torch.softmax(self.model.head(embeddings.to(self.device)).float(), dim=-1).cpu()
        proba = blend(neural, self.lexical, self.blend_weight, texts)
        in_scope = self.ood.in_scope(embeddings.numpy(), proba.max(dim=-1).values.numpy())
        return to_predictions(proba, self.labels, "unsaved", in_scope.tolist())


@dataclass
class Job:
    """One run's rows and callbacks; also the classifier's :class:`~core.ml.loop.LoopTask`."""

    config: TrainConfig
    labels: list[str]
    train_texts: list[str]
    train_targets: torch.Tensor  # (N,) int64
    val_texts: list[str]
    val_gold: list[str]
    tokenizer: PreTrainedTokenizerBase
    device: str
    progress: Callable[[Progress], None]
    should_stop: Callable[[], bool]
    started: float = field(default_factory=now)
    loss_fn: nn.Module | None = None
    frozen: dict[str, torch.Tensor] = field(default_factory=dict)  # the base encoder's embeddings, by split

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train_texts) / self.config.batch_size)

    @property
    def has_validation(self) -> bool:
        return bool(self.val_texts)

    def weights(self) -> torch.Tensor | None:
        if not self.config.class_weights:
            return None
        return class_weights(self.train_targets, len(self.labels))

    def batches(self, generator: torch.Generator) -> list[list[int]]:
        return epoch_batches([len(t) for t in self.train_texts], self.config.batch_size, generator)

    def loss(self, model: nn.Module, idx: list[int]) -> torch.Tensor:
        assert self.loss_fn is not None
        batch = tokenize(
            self.tokenizer,
            [self.train_texts[i] for i in idx],
            max_length=self.config.max_length,
            device=self.device,
        )
        with autocast(self.device):
            logits = model(**batch)
        return self.loss_fn(logits.float(), self.train_targets[idx].to(self.device))

    def validation_proba(self, model: TextClassifier) -> torch.Tensor:
        """Class probabilities (N_val, n_labels) of ``model`` on the validation texts."""
        return predict_proba(
            model,
            self.tokenizer,
            self.val_texts,
            max_length=self.config.max_length,
            batch_size=self.config.eval_batch_size,
            device=self.device,
        )

    def evaluate(self, model: nn.Module) -> float | None:
        """The configured metric on the validation rows, or None without validation rows."""
        if not self.val_texts:
            return None
        model.eval()
        with autocast(self.device):
            probs = self.validation_proba(model)  # type: ignore[arg-type]
        predicted = [self.labels[i] for i in probs.argmax(dim=-1).tolist()]
        confidences = probs.max(dim=-1).values.tolist()
        metrics = compute_metrics(
            gold=self.val_gold, predicted=predicted, confidences=confidences, labels=self.labels
        )
        return metrics.macro_f1 if self.config.metric == "macro_f1" else metrics.accuracy


def _embed(model: TextClassifier, job: Job, texts: Sequence[str], what: str) -> torch.Tensor:
    chunks = []
    for begin in range(0, len(texts), EMBED_CHUNK):
        check_cancel(job.should_stop)
        with autocast(job.device):
            chunks.append(
                embed_texts(
                    model,
                    job.tokenizer,
                    texts[begin : begin + EMBED_CHUNK],
                    max_length=job.config.max_length,
                    batch_size=job.config.eval_batch_size,
                    device=job.device,
                )
            )
        done = min(len(texts), begin + EMBED_CHUNK)
        job.progress(Progress(0, 0, 0.0, None, None, None, f"Embedding {what} rows: {done}/{len(texts)}"))
    return torch.cat(chunks) if chunks else torch.empty((0, model.head.in_features))


def fit_head(model: TextClassifier, job: Job) -> float:
    """Fit the linear head on frozen embeddings (choosing C on validation); returns the C used."""
    features = job.frozen["train"] = _embed(model, job, job.train_texts, "training")
    validation = None
    if job.val_texts:
        val_targets = torch.tensor([job.labels.index(g) for g in job.val_gold])
        validation = (_embed(model, job, job.val_texts, "validation"), val_targets)
        job.frozen["validation"] = validation[0]
    head, c = select_and_fit_head(
        train=(features, job.train_targets),
        validation=validation,
        n_labels=len(job.labels),
        c=job.config.head_c,
        weights=job.weights(),
    )
    model.head.load_state_dict(head.state_dict())
    return c


def fit_lexical_member(model: TextClassifier, job: Job) -> tuple[LexicalModel, float]:
    """Fit the TF-IDF member on the training rows; choose its blend weight on validation (0.5 without)."""
    check_cancel(job.should_stop)
    job.progress(Progress(0, 0, 0.0, None, None, None, "Fitting the lexical (TF-IDF) model"))
    lexical = fit_lexical(
        texts=job.train_texts,
        targets=job.train_targets.tolist(),
        n_labels=len(job.labels),
        c=job.config.lexical_c,
    )
    if not job.val_texts:
        return lexical, 0.5
    neural = job.validation_proba(model).numpy()
    targets = np.array([job.labels.index(g) for g in job.val_gold])
    return lexical, choose_blend_weight(neural, lexical.predict_proba(job.val_texts), targets)


def fit_ood_member(
    model: TextClassifier, job: Job, lexical: LexicalModel | None, weight: float, temperature: float = 1.0
) -> OutOfScope:
    """The out-of-scope model: a bank of the final training embeddings, calibrated on the validation rows
    (on the training rows without them) with the final probabilities (blended, then tempered, as served).
    A fine-tuned encoder embeds the rows again; a head reuses the frozen embeddings it was fitted on."""
    check_cancel(job.should_stop)
    job.progress(Progress(0, 0, 0.0, None, None, None, "Fitting the out-of-scope model"))
    reuse = job.config.method == "head"
    train = job.frozen.get("train") if reuse else None
    if train is None:
        train = _embed(model, job, job.train_texts, "training (out-of-scope)")
    held, texts = None, job.val_texts or job.train_texts
    if job.val_texts:
        held = job.frozen.get("validation") if reuse else None
        if held is None:
            held = _embed(model, job, job.val_texts, "validation (out-of-scope)")
    with torch.inference_mode():
        neural = torch.softmax(model.head((train if held is None else held).to(job.device)).float(), -1).cpu()
    proba = apply_temperature(blend(neural, lexical, weight, texts), temperature).numpy()
    return fit_out_of_scope(
        train=train.numpy(),
        held_out=None if held is None else (held.numpy(), proba),
        train_proba=proba if held is None else None,
        seed=job.config.seed,
    )


def fit_calibration(model: TextClassifier, job: Job, lexical: LexicalModel | None, weight: float) -> float:
    """The temperature of the final (blended) probabilities on the validation rows; 1.0 without them."""
    if not job.val_texts:
        return 1.0
    check_cancel(job.should_stop)
    job.progress(Progress(0, 0, 0.0, None, None, None, "Calibrating confidence (temperature)"))
    probs = blend(job.validation_proba(model), lexical, weight, job.val_texts).numpy()
    return fit_temperature(probs, np.array([job.labels.index(g) for g in job.val_gold]))


def _head_only(model: TextClassifier, job: Job) -> tuple[Best, Meter, str]:
    best, meter = Best(), Meter(total_steps=1, steps_per_epoch=1, progress=job.progress, started=job.started)
    meter.step = 1
    best.offer(model, job.evaluate(model), 1)
    meter.last_val = best.score
    meter.report("Head fitted")
    return best, meter, "completed"


def _finetune(model: TextClassifier, job: Job) -> tuple[Best, Meter, str]:
    """LoRA or full fine-tuning of encoder and head in the shared loop (inverse-frequency class weights)."""
    settings = job.config.loop_settings()
    model.encoder = trainable_encoder(model.encoder, settings)
    model.head.requires_grad_(True)
    weights = job.weights()
    job.loss_fn = nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(job.device), label_smoothing=job.config.label_smoothing
    )
    fitted = fit(
        model, job, settings, progress=job.progress, should_stop=job.should_stop, started=job.started
    )
    return fitted.best, fitted.meter, fitted.reason


def run_training(
    *,
    config: TrainConfig,
    labels: list[str],
    train: Sequence[tuple[str, str]],
    validation: Sequence[tuple[str, str]],
    runtime: Runtime,
    progress: Callable[[Progress], None],
    should_stop: Callable[[], bool],
) -> TrainedClassifier:
    """Build the model from the base encoder, train it per ``config.method`` and return it merged."""
    device, folder = start(runtime, config.seed)
    index = {label: i for i, label in enumerate(labels)}
    form = text_form(config.text_form)  # every row as the model will read texts (``core.ml.textforms``)
    job = Job(
        config=config,
        labels=labels,
        train_texts=in_form(form, [t for t, _ in train]),
        train_targets=torch.tensor([index[label] for _, label in train], dtype=torch.long),
        val_texts=in_form(form, [t for t, _ in validation]),
        val_gold=[label for _, label in validation],
        tokenizer=load_tokenizer(folder),
        device=device,
        progress=progress,
        should_stop=should_stop,
    )
    model = TextClassifier(load_encoder(folder), len(labels)).to(device)
    model.requires_grad_(False)
    head_c = fit_head(model, job) if config.method == "head" or config.head_warm_start else None
    trainable = sum(p.numel() for p in model.head.parameters())
    if config.method == "head":
        best, meter, reason = _head_only(model, job)
    else:
        best, meter, reason = _finetune(model, job)
        trainable = trainable_parameters(model)
        model.encoder = merged_encoder(model.encoder, config.loop_settings())
    model.requires_grad_(False)
    model.eval()
    lexical, weight = fit_lexical_member(model, job) if config.lexical else (None, 1.0)
    temperature = fit_calibration(model, job, lexical, weight) if config.calibrate else 1.0
    ood = fit_ood_member(model, job, lexical, weight, temperature) if config.ood else None
    stats = TrainStats(
        method=config.method,
        train_rows=len(train),
        validation_rows=len(validation),
        n_labels=len(labels),
        steps=meter.step,
        epochs_completed=meter.step / meter.steps_per_epoch,
        best_val_metric=best.score,
        best_step=best.step,
        train_seconds=now() - job.started,
        stopped_reason=reason,
        head_c=head_c,
        trainable_parameters=trainable,
        history=tuple(meter.history),
    )
    identity = base_model_identity(runtime.base_model_path)
    return TrainedClassifier(
        labels, model, job.tokenizer, config, stats, identity, device, lexical, weight, ood, temperature
    )
