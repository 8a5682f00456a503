"""The training loop behind ``core.ml.train.train_classifier`` (torch code; imported lazily).

Stages: load the base encoder -> embed the training rows once and fit a logistic head (method "head", or the
warm start for "lora"/"full") -> fine-tune (``core.ml.finetune``) -> merge LoRA adapters -> optionally fit the
TF-IDF member and its blend weight (``core.ml.lexical``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from core.ml.finetune import Best, Meter, finetune
from core.ml.head import select_and_fit_head
from core.ml.job import Job, autocast, validation_score
from core.ml.lexical import LexicalModel, choose_blend_weight, fit_lexical
from core.ml.modeling import TextClassifier, embed_texts
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
    Progress,
    TrainConfig,
    TrainedClassifier,
    TrainStats,
    check_cancel,
    now,
)

EMBED_CHUNK = 512  # rows embedded between cancellation checks


def _embed(model: TextClassifier, job: Job, texts: Sequence[str], what: str) -> torch.Tensor:
    chunks = []
    for start in range(0, len(texts), EMBED_CHUNK):
        check_cancel(job.should_stop)
        with autocast(job.device):
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
