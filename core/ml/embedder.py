"""Embedding (retrieval) models (torch code), behind ``core.ml.retrieval``: train, save, load, embed.

The model is the classifier's encoder without a head (``core.ml.modeling.encode``: mean pooling over real
tokens, then L2 normalisation). Training fine-tunes it on ``(query, positive)`` pairs in the shared loop
(``core.ml.loop``): this module supplies the batches (shuffled, length-grouped; a batch of one pair has no
negatives and is dropped), the in-batch-negatives loss (MultipleNegativesRanking: cross-entropy over cosine
similarities / temperature) and the validation MRR after each epoch. Artifacts reuse the classifier's atomic
writer with their own format ("trellis.text-embedder", task "embedding").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from core.ml import artifact
from core.ml.errors import ArtifactError
from core.ml.evaluate import evaluate_retrieval
from core.ml.loop import (
    epoch_batches,
    fit,
    merged_encoder,
    now,
    start,
    trainable_encoder,
    trainable_parameters,
)
from core.ml.modeling import (
    encode,
    encode_tokens,
    encoder_from_config,
    load_encoder,
    load_tokenizer,
    mean_pool,
    token_batches,
    trace_checked,
)
from core.ml.runtime import Runtime, apply_threads, base_model_identity, base_model_path, resolve_device
from core.ml.types import EmbedConfig, EmbedStats, Progress

FORMAT, RESERVED_KEYS = artifact.EMBEDDER_FORMAT, artifact.EMBEDDER_RESERVED_KEYS
EVAL_BATCH_SIZE = 64


def embed_all(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    device: str,
    traced: Any = None,
) -> np.ndarray:
    """(N, H) float32 unit-norm embeddings in input order, computed in batches sorted by token count (by
    ``traced``, the verified trace of the same computation, when given: ``trace_pooled_for_cpu``)."""
    width = int(encoder.config.hidden_size)
    out = np.empty((len(texts), width), dtype=np.float32)
    encoder.eval()
    with torch.inference_mode():
        batches = token_batches(
            tokenizer,
            texts,
            max_length=max_length,
            batch_size=EVAL_BATCH_SIZE,
            device="cpu" if traced is not None else device,
        )
        for idx, encoded in batches:
            if traced is not None:
                rows = traced(encoded["input_ids"], encoded["attention_mask"])
            else:
                rows = encode_tokens(encoder, encoded, device=device)
            out[idx] = rows.cpu().numpy()
    return out


class _Pooled(nn.Module):
    """``encode`` after tokenising as one module, (input ids, attention mask) -> (B, H) unit rows: what is
    traced."""

    def __init__(self, encoder: PreTrainedModel) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return nn.functional.normalize(mean_pool(hidden.float(), attention_mask), dim=-1)


def trace_pooled_for_cpu(
    encoder: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_length: int
) -> Any:
    """A checked TorchScript trace of ``encode`` for ``encoder`` on CPU, or None
    (``core.ml.modeling.trace_checked``): the vectors stay those the stored rows were made with."""
    return trace_checked(_Pooled(encoder), tokenizer, max_length)


@dataclass
class TrainedEmbedder:
    """A trained (merged) encoder in memory: ``embed(texts)`` returns (N, dim) unit-norm float32 rows."""

    encoder: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    config: EmbedConfig
    stats: EmbedStats
    base_model: dict[str, str]
    device: str

    @property
    def dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return embed_all(self.encoder, self.tokenizer, list(texts), self.config.max_length, self.device)


@dataclass
class LoadedEmbedder:
    """A saved embedder reloaded on CPU (or ``runtime``'s device); ``embed`` matches the trained one."""

    encoder: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    manifest: dict
    device: str

    @property
    def dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        max_length = int(self.manifest["hyperparameters"]["max_length"])
        return embed_all(self.encoder, self.tokenizer, list(texts), max_length, self.device)


@dataclass
class BaseEmbedder:
    """The base encoder itself, untrained: mean-pooled, unit-norm sentence vectors.

    What retrieval uses before a tenant has trained an embedding model (all-MiniLM-L6-v2 was trained for
    exactly this). ``identity`` names the encoder and its weight hash, so stored vectors can tell when
    they were made by another model.
    """

    encoder: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    identity: dict[str, str]
    device: str
    max_length: int = 256
    traced: Any = None  # on CPU: the verified trace of ``encode`` (``trace_pooled_for_cpu``), or None

    @property
    def dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return embed_all(self.encoder, self.tokenizer, list(texts), self.max_length, self.device, self.traced)


def load_base_embedder(*, runtime: Runtime, max_length: int = 256, trace: bool = True) -> BaseEmbedder:
    """The base encoder for serving; on CPU (``trace``) it embeds through a verified TorchScript trace."""
    apply_threads(runtime)
    folder = base_model_path(runtime.base_model_path)
    encoder = load_encoder(folder)
    device = resolve_device(runtime)
    encoder.requires_grad_(False)
    encoder.to(device).eval()
    identity = base_model_identity(runtime.base_model_path)
    tokenizer = load_tokenizer(folder)
    traced = trace_pooled_for_cpu(encoder, tokenizer, max_length) if trace and device == "cpu" else None
    return BaseEmbedder(encoder, tokenizer, identity, device, max_length, traced)


def contrastive_loss(
    queries: torch.Tensor, positives: torch.Tensor, duplicate: torch.Tensor, tau: float
) -> torch.Tensor:
    """In-batch-negatives loss: queries, positives (B, H) unit-norm; ``duplicate`` (B, B) masks columns
    whose positive text equals the row's own (they are not negatives)."""
    logits = queries @ positives.T / tau  # (B, B) cosine similarities / temperature
    logits = logits.masked_fill(duplicate, float("-inf"))
    return nn.functional.cross_entropy(logits, torch.arange(len(queries), device=queries.device))


@dataclass
class PairsTask:
    """The embedder's :class:`~core.ml.loop.LoopTask`: pairs in, in-batch-negatives loss, validation MRR."""

    config: EmbedConfig
    pairs: list[tuple[str, str]]
    validation: list[tuple[str, str]]
    embedder: TrainedEmbedder  # evaluated with the encoder being trained

    def batches(self, generator: torch.Generator) -> list[list[int]]:
        lengths = [len(q) + len(p) for q, p in self.pairs]
        return [b for b in epoch_batches(lengths, self.config.batch_size, generator) if len(b) >= 2]

    @property
    def steps_per_epoch(self) -> int:
        # batch sizes do not depend on the shuffle: any generator counts them
        return max(1, len(self.batches(torch.Generator())))

    @property
    def has_validation(self) -> bool:
        return bool(self.validation)

    def loss(self, model: nn.Module, idx: list[int]) -> torch.Tensor:
        queries = [self.pairs[i][0] for i in idx]
        positives = [self.pairs[i][1] for i in idx]
        kwargs = {"max_length": self.config.max_length, "device": self.embedder.device}
        q = encode(model, self.embedder.tokenizer, queries, **kwargs)  # type: ignore[arg-type]
        p = encode(model, self.embedder.tokenizer, positives, **kwargs)  # type: ignore[arg-type]
        same = torch.tensor([[a == b for b in positives] for a in positives], device=q.device)
        duplicate = same & ~torch.eye(len(idx), dtype=torch.bool, device=q.device)
        return contrastive_loss(q, p, duplicate, self.config.temperature)

    def evaluate(self, model: nn.Module) -> float | None:
        if not self.validation:
            return None
        self.embedder.encoder = model
        return evaluate_retrieval(embedder=self.embedder, pairs=self.validation)["mrr"]


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
    device, folder = start(runtime, config.seed)
    settings = config.loop_settings()
    encoder = load_encoder(folder).to(device)
    encoder.requires_grad_(False)
    model = trainable_encoder(encoder, settings)
    stats = EmbedStats(config.method, len(train), len(validation), 0, 0.0, None, None, 0.0, "completed", 0)
    identity = base_model_identity(runtime.base_model_path)
    started = now()  # the budget counts training, not loading the encoder
    embedder = TrainedEmbedder(model, load_tokenizer(folder), config, stats, identity, device)
    task = PairsTask(config, train, validation, embedder)
    trainable = trainable_parameters(model)
    fitted = fit(model, task, settings, progress=progress, should_stop=should_stop, started=started)
    embedder.encoder = merged_encoder(model, settings)
    embedder.stats = EmbedStats(
        method=config.method,
        train_pairs=len(train),
        validation_pairs=len(validation),
        steps=fitted.meter.step,
        epochs_completed=fitted.meter.step / fitted.meter.steps_per_epoch,
        best_val_mrr=fitted.best.score,
        best_step=fitted.best.step,
        train_seconds=now() - started,
        stopped_reason=fitted.reason,
        trainable_parameters=trainable,
        history=tuple(fitted.meter.history),
    )
    return embedder


def save_embedder(*, model: TrainedEmbedder, directory: Path, extra_manifest: dict[str, Any]) -> dict:
    """Write ``model`` atomically as the new folder ``directory`` (must not exist); returns the manifest."""
    clash = sorted(RESERVED_KEYS & set(extra_manifest))
    if clash:
        raise ArtifactError(f"extra_manifest may not set reserved keys: {', '.join(clash)}.")

    def write(folder: Path) -> dict:
        state = {k: v.detach().cpu().contiguous() for k, v in model.encoder.state_dict().items()}
        save_file(state, str(folder / artifact.WEIGHTS))
        model.encoder.config.save_pretrained(str(folder))
        model.tokenizer.save_pretrained(str(folder))
        manifest = {
            "format": FORMAT,
            "format_version": artifact.FORMAT_VERSION,
            "task": "embedding",
            "weights": "full",
            "files": artifact.file_hashes(folder),
            "base_model": model.base_model,
            "embedding": {"dim": model.dim, "pooling": "mean", "normalized": True},
            "hyperparameters": model.config.to_dict(),
            "training": model.stats.to_dict(),
            "libraries": artifact.library_versions(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **extra_manifest,
        }
        artifact.write_manifest(manifest, folder)
        artifact.sync_folder(folder)
        return manifest

    return artifact.publish_folder(Path(directory), write)


def load_embedder(*, directory: Path, runtime: Runtime) -> LoadedEmbedder:
    """Rebuild a saved embedder, verified against its manifest (file hashes, architecture)."""
    apply_threads(runtime)
    directory = Path(directory)
    manifest = artifact.read_manifest(directory, expected_format=FORMAT)
    artifact.verify_files(directory, manifest)
    encoder = encoder_from_config(directory)
    missing, unexpected = encoder.load_state_dict(load_file(str(directory / artifact.WEIGHTS)), strict=False)
    if missing or unexpected:
        raise ArtifactError("Embedder weights do not match the model architecture.")
    device = resolve_device(runtime)
    encoder.requires_grad_(False)
    encoder.to(device).eval()
    return LoadedEmbedder(encoder, load_tokenizer(directory), manifest, device)
