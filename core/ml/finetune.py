"""Fine-tuning (LoRA or full): AdamW with warmup and linear decay, inverse-frequency class weights,
length-grouped batches, evaluation points, early stopping on the best validation state, and the time budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from core.ml.job import Job, autocast, validation_score
from core.ml.modeling import TextClassifier, tokenize
from core.ml.train import (
    LORA_TARGETS,
    Progress,
    TrainConfig,
    check_cancel,
    now,
)


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
    with autocast(job.device):
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
