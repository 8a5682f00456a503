"""The training loop behind ``core.ml.train.train_classifier`` (torch code; imported lazily).

Stages: load base encoder -> embed training rows once and fit a logistic head (method "head", or the warm
start for "lora"/"full") -> optionally fine-tune with AdamW, warmup + linear decay, inverse-frequency class
weights and length-grouped batches -> keep the best validation state -> merge LoRA adapters.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.ml.evaluate import compute_metrics
from core.ml.head import class_weights, select_and_fit_head
from core.ml.lexical import LexicalModel, choose_blend_weight, fit_lexical
from core.ml.modeling import TextClassifier, embed_texts, predict_proba, tokenize
from core.ml.runtime import (
    Runtime,
    apply_threads,
    base_model_identity,
    base_model_path,
    load_encoder,
    load_tokenizer,
    resolve_device,
    seed_everything,
)
from core.ml.train import (
    LORA_TARGETS,
    Progress,
    TrainConfig,
    TrainedClassifier,
    TrainStats,
    check_cancel,
    now,
)

EMBED_CHUNK = 512  # rows embedded between cancellation checks


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


def _autocast(device: str) -> contextlib.AbstractContextManager[object]:
    if device == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def validation_score(model: TextClassifier, job: Job) -> float | None:
    """The configured metric on the validation rows, or None without validation rows."""
    if not job.val_texts:
        return None
    model.eval()
    with _autocast(job.device):
        probs = predict_proba(
            model,
            job.tokenizer,
            job.val_texts,  # type: ignore[arg-type]
            max_length=job.config.max_length,
            batch_size=job.config.eval_batch_size,
            device=job.device,
        )
    predicted = [job.labels[i] for i in probs.argmax(dim=-1).tolist()]
    confidences = probs.max(dim=-1).values.tolist()
    metrics = compute_metrics(
        gold=job.val_gold, predicted=predicted, confidences=confidences, labels=job.labels
    )
    return metrics.macro_f1 if job.config.metric == "macro_f1" else metrics.accuracy


def _embed(model: TextClassifier, job: Job, texts: Sequence[str], what: str) -> torch.Tensor:
    chunks = []
    for start in range(0, len(texts), EMBED_CHUNK):
        check_cancel(job.should_stop)
        with _autocast(job.device):
            chunks.append(
                embed_texts(
                    model,
                    job.tokenizer,
                    texts[start : start + EMBED_CHUNK],  # type: ignore[arg-type]
                    max_length=job.config.max_length,
                    batch_size=job.config.eval_batch_size,
                    device=job.device,
                )
            )
        done = min(len(texts), start + EMBED_CHUNK)
        job.progress(Progress(0, 0, 0.0, None, None, None, f"Embedding {what} rows: {done}/{len(texts)}"))
    return torch.cat(chunks) if chunks else torch.empty((0, model.head.in_features))


def fit_head(model: TextClassifier, job: Job) -> float:
    """Fit the linear head on frozen embeddings (choosing C on validation); returns the C used."""
    features = _embed(model, job, job.train_texts, "training")
    validation = None
    if job.val_texts:
        val_targets = torch.tensor([job.labels.index(g) for g in job.val_gold])
        validation = (_embed(model, job, job.val_texts, "validation"), val_targets)
    head, c = select_and_fit_head(
        train=(features, job.train_targets),
        validation=validation,
        n_labels=len(job.labels),
        c=job.config.head_c,
        weights=job.weights(),
    )
    model.head.load_state_dict(head.state_dict())
    return c


def epoch_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar-length rows (sorted within windows of 50 batches)."""
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * 50
    batches = []
    for start in range(0, len(perm), window):
        part = sorted(perm[start : start + window], key=lengths.__getitem__)
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def _prepare_trainable(model: TextClassifier, config: TrainConfig) -> None:
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(LORA_TARGETS),
            bias="none",
        )
        model.encoder = get_peft_model(model.encoder, lora)  # type: ignore[assignment]
    else:
        for param in model.parameters():
            param.requires_grad_(True)
    model.head.requires_grad_(True)


def _optimizer(
    model: TextClassifier, config: TrainConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, object]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "LayerNorm" not in n)]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.effective_learning_rate)
    warmup = max(1, int(total_steps * config.warmup_ratio))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


@dataclass
class Best:
    """The best validation state seen so far (trainable parameters only)."""

    score: float | None = None
    step: int | None = None
    params: dict[str, torch.Tensor] | None = None
    bad_evals: int = 0

    def offer(self, model: TextClassifier, score: float | None, step: int) -> None:
        if score is None:
            return
        if self.score is None or score > self.score + 1e-9:
            self.score, self.step, self.bad_evals = score, step, 0
            self.params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        else:
            self.bad_evals += 1

    def restore(self, model: TextClassifier) -> None:
        if self.params is None:
            return
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in self.params:
                    param.copy_(self.params[name])


@dataclass
class Meter:
    """Running loss between progress reports, and the step/ETA arithmetic."""

    total_steps: int
    steps_per_epoch: int
    step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    last_val: float | None = None

    def report(self, job: Job, message: str = "") -> None:
        loss = self.loss_sum / self.loss_count if self.loss_count else None
        elapsed = now() - job.started
        eta = elapsed / self.step * (self.total_steps - self.step) if self.step else None
        epoch = self.step / self.steps_per_epoch
        job.progress(Progress(self.step, self.total_steps, epoch, loss, self.last_val, eta, message))
        job.history.append(
            {"step": float(self.step), "epoch": epoch, "loss": loss, "val_metric": self.last_val}
        )
        self.loss_sum, self.loss_count = 0.0, 0


def _eval_points(steps_per_epoch: int, evals_per_epoch: int) -> set[int]:
    """1-based step-in-epoch indices at which to evaluate (always includes the epoch's last step)."""
    return {math.ceil(steps_per_epoch * (k + 1) / evals_per_epoch) for k in range(evals_per_epoch)}


def _train_step(model: TextClassifier, job: Job, idx: list[int], loss_fn: nn.Module) -> torch.Tensor:
    batch = tokenize(
        job.tokenizer,  # type: ignore[arg-type]
        [job.train_texts[i] for i in idx],
        max_length=job.config.max_length,
        device=job.device,
    )
    with _autocast(job.device):
        logits = model(**batch)
    return loss_fn(logits.float(), job.train_targets[idx].to(job.device))


def _batches(job: Job, generator: torch.Generator) -> Iterator[tuple[int, list[int]]]:
    lengths = [len(t) for t in job.train_texts]
    for _epoch in range(job.config.epochs):
        yield from enumerate(epoch_batches(lengths, job.config.batch_size, generator), start=1)


def finetune(model: TextClassifier, job: Job) -> tuple[Best, Meter, str]:
    """Fine-tune (LoRA or full) with early stopping; returns the best state, the meter and why it stopped."""
    config = job.config
    _prepare_trainable(model, config)
    steps_per_epoch = math.ceil(len(job.train_texts) / config.batch_size)
    meter = Meter(total_steps=steps_per_epoch * config.epochs, steps_per_epoch=steps_per_epoch)
    optimizer, scheduler = _optimizer(model, config, meter.total_steps)
    weights = job.weights()
    loss_fn = nn.CrossEntropyLoss(
        weight=None if weights is None else weights.to(job.device), label_smoothing=config.label_smoothing
    )
    best, points, reason = Best(), _eval_points(steps_per_epoch, config.evals_per_epoch), "completed"
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    for position, idx in _batches(job, generator):
        check_cancel(job.should_stop)
        if job.out_of_time():
            reason = "time_budget"
            break
        loss = _train_step(model, job, idx, loss_fn)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()  # type: ignore[attr-defined]
        meter.step, meter.loss_sum, meter.loss_count = (
            meter.step + 1,
            meter.loss_sum + loss.item(),
            meter.loss_count + 1,
        )
        if position in points and job.val_texts:
            meter.last_val = validation_score(model, job)
            best.offer(model, meter.last_val, meter.step)
            model.train()
            meter.report(job, "Validation")
            if config.patience > 0 and best.bad_evals >= config.patience:
                reason = "early_stopping"
                break
        elif meter.step % config.progress_every == 0:
            meter.report(job)
    if job.val_texts and (best.step != meter.step or best.score is None) and reason == "time_budget":
        best.offer(model, validation_score(model, job), meter.step)
    best.restore(model)
    return best, meter, reason


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
    neural = predict_proba(
        model,
        job.tokenizer,
        job.val_texts,  # type: ignore[arg-type]
        max_length=job.config.max_length,
        batch_size=job.config.eval_batch_size,
        device=job.device,
    ).numpy()
    targets = np.array([job.labels.index(g) for g in job.val_gold])
    return lexical, choose_blend_weight(neural, lexical.predict_proba(job.val_texts), targets)


def _merge(model: TextClassifier, config: TrainConfig) -> None:
    if config.method == "lora":
        model.encoder = model.encoder.merge_and_unload()  # type: ignore[operator]
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()


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
    apply_threads(runtime)
    seed_everything(config.seed)
    device = resolve_device(runtime)
    folder = base_model_path(runtime.base_model_path)
    index = {label: i for i, label in enumerate(labels)}
    job = Job(
        config=config,
        labels=labels,
        train_texts=[t for t, _ in train],
        train_targets=torch.tensor([index[label] for _, label in train], dtype=torch.long),
        val_texts=[t for t, _ in validation],
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
        best, meter, reason = Best(), Meter(total_steps=1, steps_per_epoch=1, step=1), "completed"
        best.offer(model, validation_score(model, job), 1)
        meter.last_val = best.score
        meter.report(job, "Head fitted")
    else:
        best, meter, reason = finetune(model, job)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _merge(model, config)
    lexical, weight = fit_lexical_member(model, job) if config.lexical else (None, 1.0)
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
        history=tuple(job.history),
    )
    identity = base_model_identity(runtime.base_model_path)
    return TrainedClassifier(
        labels,
        model,
        job.tokenizer,
        config,
        stats,
        identity,
        device,
        lexical,
        weight,  # type: ignore[arg-type]
    )
