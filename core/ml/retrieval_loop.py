"""The training loop behind ``core.ml.retrieval.train_embedder`` (torch code; imported lazily).

Stages: load the base encoder -> wrap it with LoRA adapters (or unfreeze it) -> AdamW with warmup and linear
decay over shuffled, length-grouped batches of pairs, in-batch negatives -> validation MRR after each epoch,
keeping the best state -> merge the adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from core.ml.finetune import Best, epoch_batches
from core.ml.retrieval import (
    EmbedConfig,
    EmbedStats,
    TrainedEmbedder,
    _encode,
    contrastive_loss,
    evaluate_retrieval,
)
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
from core.ml.train import LORA_TARGETS, Progress, check_cancel, now

WARMUP_RATIO = 0.1
WEIGHT_DECAY = 0.01


@dataclass
class _Run:
    """One run's inputs and bookkeeping."""

    config: EmbedConfig
    pairs: list[tuple[str, str]]
    validation: list[tuple[str, str]]
    embedder: TrainedEmbedder
    progress: Callable[[Progress], None]
    should_stop: Callable[[], bool]
    steps_per_epoch: int
    started: float = field(default_factory=now)
    step: int = 0
    losses: list[float] = field(default_factory=list)
    history: list[dict[str, float | None]] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.config.epochs

    def out_of_time(self) -> bool:
        budget = self.config.time_budget_s
        return budget is not None and now() - self.started > budget

    def report(self, val_mrr: float | None = None, message: str = "") -> None:
        loss = sum(self.losses) / len(self.losses) if self.losses else None
        elapsed = now() - self.started
        eta = elapsed / self.step * (self.total_steps - self.step) if self.step else None
        epoch = self.step / self.steps_per_epoch
        self.progress(Progress(self.step, self.total_steps, epoch, loss, val_mrr, eta, message))
        self.history.append({"step": float(self.step), "epoch": epoch, "loss": loss, "val_metric": val_mrr})
        self.losses.clear()


def _batches(batch_size: int, lengths: Sequence[int], generator: torch.Generator) -> list[list[int]]:
    """Shuffled, length-grouped batches; a batch of one pair is dropped (it has no negatives)."""
    return [b for b in epoch_batches(lengths, batch_size, generator) if len(b) >= 2]


def _prepare(encoder: torch.nn.Module, config: EmbedConfig) -> torch.nn.Module:
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, target_modules=list(LORA_TARGETS), bias="none"
        )
        return get_peft_model(encoder, lora)  # type: ignore[arg-type]
    encoder.requires_grad_(True)
    return encoder


def _optimizer(
    model: torch.nn.Module, config: EmbedConfig, total_steps: int
) -> tuple[torch.optim.Optimizer, object]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if p.ndim >= 2 and "LayerNorm" not in n]
    rest = [p for n, p in named if not (p.ndim >= 2 and "LayerNorm" not in n)]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": rest, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=config.effective_learning_rate)
    warmup = max(1, int(total_steps * WARMUP_RATIO))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _step_loss(run: _Run, model: torch.nn.Module, idx: list[int]) -> torch.Tensor:
    queries = [run.pairs[i][0] for i in idx]
    positives = [run.pairs[i][1] for i in idx]
    kwargs = {"max_length": run.config.max_length, "device": run.embedder.device}
    tokenizer = run.embedder.tokenizer
    q = _encode(model, tokenizer, queries, **kwargs)  # type: ignore[arg-type]
    p = _encode(model, tokenizer, positives, **kwargs)  # type: ignore[arg-type]
    same = torch.tensor([[a == b for b in positives] for a in positives], device=q.device)
    duplicate = same & ~torch.eye(len(idx), dtype=torch.bool, device=q.device)
    return contrastive_loss(q, p, duplicate, run.config.temperature)


def _validation_mrr(run: _Run, model: torch.nn.Module) -> float | None:
    if not run.validation:
        return None
    run.embedder.encoder = model  # type: ignore[assignment]
    mrr = evaluate_retrieval(embedder=run.embedder, pairs=run.validation)["mrr"]
    model.train()
    return mrr


def _fit(run: _Run, model: torch.nn.Module) -> tuple[Best, str]:
    """The optimisation loop; returns the best validation state and why it stopped."""
    optimizer, scheduler = _optimizer(model, run.config, run.total_steps)
    lengths = [len(q) + len(p) for q, p in run.pairs]
    generator = torch.Generator().manual_seed(run.config.seed)
    best = Best()
    model.train()
    for _epoch in range(run.config.epochs):
        for idx in _batches(run.config.batch_size, lengths, generator):
            check_cancel(run.should_stop)
            if run.out_of_time():
                best.offer(model, _validation_mrr(run, model), run.step)  # type: ignore[arg-type]
                return best, "time_budget"
            loss = _step_loss(run, model, idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()  # type: ignore[attr-defined]
            run.step += 1
            run.losses.append(loss.item())
            if run.step % run.config.progress_every == 0:
                run.report()
        mrr = _validation_mrr(run, model)
        best.offer(model, mrr, run.step)  # type: ignore[arg-type]
        run.report(mrr, "Validation" if mrr is not None else "Epoch done")
        if run.config.patience > 0 and best.bad_evals >= run.config.patience:
            return best, "early_stopping"
    return best, "completed"


def run_embedding_training(
    *,
    config: EmbedConfig,
    train: list[tuple[str, str]],
    validation: list[tuple[str, str]],
    runtime: Runtime,
    progress: Callable[[Progress], None],
    should_stop: Callable[[], bool],
) -> TrainedEmbedder:
    """Build the encoder from the base model, fine-tune it on the pairs and return it merged."""
    apply_threads(runtime)
    seed_everything(config.seed)
    device = resolve_device(runtime)
    folder = base_model_path(runtime.base_model_path)
    encoder = load_encoder(folder).to(device)
    encoder.requires_grad_(False)
    model = _prepare(encoder, config)
    stats = EmbedStats(config.method, len(train), len(validation), 0, 0.0, None, None, 0.0, "completed", 0)
    embedder = TrainedEmbedder(
        model,
        load_tokenizer(folder),
        config,
        stats,
        base_model_identity(runtime.base_model_path),
        device,  # type: ignore[arg-type]
    )
    batches_per_epoch = len(_batches(config.batch_size, [0] * len(train), torch.Generator()))
    run = _Run(config, train, validation, embedder, progress, should_stop, max(1, batches_per_epoch))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    best, reason = _fit(run, model)
    best.restore(model)  # type: ignore[arg-type]
    merged = model.merge_and_unload() if config.method == "lora" else model  # type: ignore[operator]
    merged.requires_grad_(False)
    merged.eval()
    embedder.encoder = merged
    embedder.stats = EmbedStats(
        method=config.method,
        train_pairs=len(train),
        validation_pairs=len(validation),
        steps=run.step,
        epochs_completed=run.step / run.steps_per_epoch,
        best_val_mrr=best.score,
        best_step=best.step,
        train_seconds=now() - run.started,
        stopped_reason=reason,
        trainable_parameters=trainable,
        history=tuple(run.history),
    )
    return embedder
