"""The one training loop, for every kind of model (torch code).

The loop owns what every fine-tune shares: the run's start (threads, seed, device), LoRA set-up through
peft and the merge at the end, AdamW with weight decay groups and warmup + linear decay, bf16 autocast on
CUDA, shuffled length-grouped batches, evaluation points, best-state tracking and early stopping, the time
budget, cancellation (``TrainingCancelled``) and :class:`~core.ml.types.Progress` reports. A kind supplies a
:class:`LoopTask`: one epoch's batches, the loss of a batch and the validation score (higher is better).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from peft import LoraConfig, get_peft_model
from torch import nn

from core.ml.errors import TrainingCancelled
from core.ml.runtime import Runtime, apply_threads, base_model_path, resolve_device, seed_everything
from core.ml.types import LORA_TARGETS, LoopSettings, Progress


def now() -> float:
    return time.monotonic()


def check_cancel(should_stop: Callable[[], bool]) -> None:
    if should_stop():
        raise TrainingCancelled("Training was cancelled.")


def start(runtime: Runtime, seed: int) -> tuple[str, Path]:
    """Set the process's threads and seeds for a run; returns its device and the base encoder's folder."""
    apply_threads(runtime)
    seed_everything(seed)
    return resolve_device(runtime), base_model_path(runtime.base_model_path)


def epoch_batches(lengths: Sequence[int], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of similar-length rows (sorted within windows of 50 batches)."""
    perm = torch.randperm(len(lengths), generator=generator).tolist()
    window = batch_size * 50
    batches = []
    for begin in range(0, len(perm), window):
        part = sorted(perm[begin : begin + window], key=lengths.__getitem__)
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in order]


def trainable_encoder(encoder: nn.Module, settings: LoopSettings) -> nn.Module:
    """The encoder to train: wrapped with LoRA adapters (method "lora") or with every weight trainable."""
    if settings.method == "lora":
        lora = LoraConfig(
            r=settings.lora_r,
            lora_alpha=settings.lora_alpha,
            lora_dropout=settings.lora_dropout,
            target_modules=list(LORA_TARGETS),
            bias="none",
        )
        return get_peft_model(encoder, lora)
    encoder.requires_grad_(True)
    return encoder


def merged_encoder(encoder: nn.Module, settings: LoopSettings) -> nn.Module:
    """The adapters merged into the encoder's weights (plain module again), frozen, in eval mode."""
    merged = encoder.merge_and_unload() if settings.method == "lora" else encoder  # type: ignore[operator]
    merged.requires_grad_(False)
    merged.eval()
    return merged


def _optimizer(
    model: nn.Module, settings: LoopSettings, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and "LayerNorm" not in n]
    no_decay = [p for n, p in named if not (p.ndim >= 2 and "LayerNorm" not in n)]
    groups = [
        {"params": decay, "weight_decay": settings.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=settings.learning_rate)
    warmup = max(1, int(total_steps * settings.warmup_ratio))

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

    def offer(self, model: nn.Module, score: float | None, step: int) -> None:
        if score is None:
            return
        if self.score is None or score > self.score + 1e-9:
            self.score, self.step, self.bad_evals = score, step, 0
            self.params = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
        else:
            self.bad_evals += 1

    def restore(self, model: nn.Module) -> None:
        if self.params is None:
            return
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in self.params:
                    param.copy_(self.params[name])


@dataclass
class Meter:
    """Running loss between progress reports, the step/ETA arithmetic and the run's history."""

    total_steps: int
    steps_per_epoch: int
    progress: Callable[[Progress], None]
    started: float = field(default_factory=now)
    step: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    last_val: float | None = None
    history: list[dict[str, float | None]] = field(default_factory=list)

    def add(self, loss: float) -> None:
        self.step, self.loss_sum, self.loss_count = self.step + 1, self.loss_sum + loss, self.loss_count + 1

    def report(self, message: str = "") -> None:
        loss = self.loss_sum / self.loss_count if self.loss_count else None
        elapsed = now() - self.started
        eta = elapsed / self.step * (self.total_steps - self.step) if self.step else None
        epoch = self.step / self.steps_per_epoch
        self.progress(Progress(self.step, self.total_steps, epoch, loss, self.last_val, eta, message))
        self.history.append(
            {"step": float(self.step), "epoch": epoch, "loss": loss, "val_metric": self.last_val}
        )
        self.loss_sum, self.loss_count = 0.0, 0


class LoopTask(Protocol):
    """What a kind supplies to :func:`fit`."""

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch (the same every epoch)."""
        ...

    @property
    def has_validation(self) -> bool: ...

    def batches(self, generator: torch.Generator) -> list[list[int]]:
        """One epoch's batches of row indices (shuffled with ``generator``)."""
        ...

    def loss(self, model: nn.Module, idx: list[int]) -> torch.Tensor:
        """The scalar training loss of one batch (forward under :func:`core.ml.modeling.autocast`)."""
        ...

    def evaluate(self, model: nn.Module) -> float | None:
        """The validation score (higher is better); None without validation rows."""
        ...


@dataclass
class Fitted:
    """How a run went: the best state (restored into the model), the meter and why it stopped."""

    best: Best
    meter: Meter
    reason: str  # completed | early_stopping | time_budget


def _eval_points(steps_per_epoch: int, evals_per_epoch: int) -> set[int]:
    """1-based step-in-epoch indices at which to evaluate (always includes the epoch's last step)."""
    return {math.ceil(steps_per_epoch * (k + 1) / evals_per_epoch) for k in range(evals_per_epoch)}


def _evaluate(model: nn.Module, task: LoopTask) -> float | None:
    score = task.evaluate(model) if task.has_validation else None
    model.train()
    return score


def _step(
    model: nn.Module,
    task: LoopTask,
    idx: list[int],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
) -> float:
    """One optimisation step on one batch (gradients clipped to norm 1); returns its loss."""
    loss = task.loss(model, idx)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    scheduler.step()
    return loss.item()


def fit(
    model: nn.Module,
    task: LoopTask,
    settings: LoopSettings,
    *,
    progress: Callable[[Progress], None],
    should_stop: Callable[[], bool],
    started: float | None = None,
) -> Fitted:
    """Train ``model``'s trainable parameters on ``task``; the best validation state is restored at the
    end."""
    meter = Meter(settings.epochs * task.steps_per_epoch, task.steps_per_epoch, progress)
    meter.started = now() if started is None else started
    optimizer, scheduler = _optimizer(model, settings, meter.total_steps)
    best, reason = Best(), "completed"
    points = _eval_points(task.steps_per_epoch, settings.evals_per_epoch)
    generator = torch.Generator().manual_seed(settings.seed)
    budget = settings.time_budget_s
    model.train()
    for _epoch in range(settings.epochs):
        for position, idx in enumerate(task.batches(generator), start=1):
            check_cancel(should_stop)
            if budget is not None and now() - meter.started > budget:
                reason = "time_budget"
                break
            meter.add(_step(model, task, idx, optimizer, scheduler))
            if position in points and task.has_validation and not settings.epoch_reports:
                meter.last_val = _evaluate(model, task)
                best.offer(model, meter.last_val, meter.step)
                meter.report("Validation")
                if settings.patience > 0 and best.bad_evals >= settings.patience:
                    reason = "early_stopping"
                    break
            elif meter.step % settings.progress_every == 0:
                meter.report()
        if reason != "completed":
            break
        if settings.epoch_reports:
            meter.last_val = _evaluate(model, task)
            best.offer(model, meter.last_val, meter.step)
            meter.report("Validation" if meter.last_val is not None else "Epoch done")
            meter.last_val = None
            if settings.patience > 0 and best.bad_evals >= settings.patience:
                reason = "early_stopping"
                break
    if reason == "time_budget" and task.has_validation and (best.step != meter.step or best.score is None):
        best.offer(model, _evaluate(model, task), meter.step)
    best.restore(model)
    return Fitted(best, meter, reason)


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
