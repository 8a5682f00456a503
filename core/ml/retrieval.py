"""Embedding (retrieval) fine-tuning on ``(query, positive)`` pairs: train, evaluate, save and load.

The second task of the runtime, behind knowledge-base search and recommendation. The model is the
classifier's encoder without a head: mean pooling over real tokens, then L2 normalisation. Training uses
in-batch negatives (MultipleNegativesRanking: cross-entropy over cosine similarities / temperature) with
LoRA adapters merged at the end (or full fine-tuning), seeded, bf16 autocast on CUDA, ``Progress`` reports,
an optional time budget, early stopping on validation MRR and ``TrainingCancelled``. Artifacts reuse the
classifier's atomic writer with their own format ("trellis.text-embedder", task "embedding").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from core.ml.errors import ArtifactError, MLError
from core.ml.runtime import Runtime
from core.ml.train import Progress

if TYPE_CHECKING:
    import numpy as np
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

METHODS = ("lora", "full")
DEFAULT_LEARNING_RATE = {"lora": 5e-4, "full": 5e-5}
FORMAT = "trellis.text-embedder"
EVAL_BATCH_SIZE = 64
RESERVED_KEYS = frozenset(
    {"format", "format_version", "task", "weights", "files", "base_model", "embedding"}
    | {"hyperparameters", "training", "libraries", "created_at"}
)


@dataclass(frozen=True)
class EmbedConfig:
    """Hyper-parameters. ``learning_rate=None`` picks the method's default (LoRA 5e-4, full 5e-5)."""

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
        if self.method not in METHODS:
            raise MLError(f"Invalid embedding config: method must be one of {', '.join(METHODS)}.")
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
        for ok, message in checks:
            if not ok:
                raise MLError(f"Invalid embedding config: {message}.")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "learning_rate": self.effective_learning_rate}


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


def _encode(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int,
    device: str,
) -> torch.Tensor:
    """Unit-length sentence embeddings (B, H) of one batch, with gradients if enabled."""
    from torch import nn

    from core.ml.job import autocast
    from core.ml.modeling import mean_pool, tokenize

    batch = tokenize(tokenizer, texts, max_length=max_length, device=device)
    with autocast(device):
        hidden = encoder(**batch).last_hidden_state  # (B, T, H)
    return nn.functional.normalize(mean_pool(hidden.float(), batch["attention_mask"]), dim=-1)


def _embed_all(
    encoder: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_length: int,
    device: str,
) -> np.ndarray:
    """(N, H) float32 unit-norm embeddings in input order, computed in length-sorted batches."""
    import numpy as np
    import torch

    from core.ml.modeling import length_sorted_batches

    width = int(encoder.config.hidden_size)
    out = np.empty((len(texts), width), dtype=np.float32)
    encoder.eval()
    with torch.inference_mode():
        for idx in length_sorted_batches(texts, EVAL_BATCH_SIZE):
            rows = _encode(encoder, tokenizer, [texts[i] for i in idx], max_length=max_length, device=device)
            out[idx] = rows.cpu().numpy()
    return out


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
        return _embed_all(self.encoder, self.tokenizer, list(texts), self.config.max_length, self.device)


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
        return _embed_all(self.encoder, self.tokenizer, list(texts), max_length, self.device)


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

    @property
    def dim(self) -> int:
        return int(self.encoder.config.hidden_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return _embed_all(self.encoder, self.tokenizer, list(texts), self.max_length, self.device)


def load_base_embedder(*, runtime: Runtime, max_length: int = 256) -> BaseEmbedder:
    from core.ml.runtime import (
        apply_threads,
        base_model_identity,
        base_model_path,
        load_encoder,
        load_tokenizer,
        resolve_device,
    )

    apply_threads(runtime)
    folder = base_model_path(runtime.base_model_path)
    encoder = load_encoder(folder)
    device = resolve_device(runtime)
    encoder.requires_grad_(False)
    encoder.to(device).eval()
    identity = base_model_identity(runtime.base_model_path)
    return BaseEmbedder(encoder, load_tokenizer(folder), identity, device, max_length)


class SupportsEmbed(Protocol):
    """Anything with ``embed(texts) -> (N, dim)`` unit-norm rows (trained or loaded embedders)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def evaluate_retrieval(
    *, embedder: SupportsEmbed, pairs: Sequence[tuple[str, str]], k: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Rank the deduplicated positives of ``pairs`` for each query: recall@k, MRR and n (queries).

    A corpus entry whose text is the query itself is skipped for that query (it would trivially rank first
    when queries double as other queries' positives).
    """
    import numpy as np

    if not pairs:
        raise MLError("Retrieval evaluation needs at least one (query, positive) pair.")
    corpus = list(dict.fromkeys(positive for _, positive in pairs))
    position = {text: i for i, text in enumerate(corpus)}
    gold = np.array([position[positive] for _, positive in pairs])
    scores = embedder.embed([q for q, _ in pairs]) @ embedder.embed(corpus).T  # (n_queries, n_corpus)
    for row, (query, positive) in enumerate(pairs):
        if query in position and query != positive:
            scores[row, position[query]] = -np.inf
    gold_scores = scores[np.arange(len(pairs)), gold][:, None]
    ranks = (scores > gold_scores).sum(axis=1) + 1  # 1-based; ties resolved in the query's favour
    metrics = {f"recall@{n}": float((ranks <= n).mean()) for n in k}
    return {**metrics, "mrr": float((1.0 / ranks).mean()), "n": float(len(pairs))}


def contrastive_loss(queries: torch.Tensor, positives: torch.Tensor, duplicate: torch.Tensor, tau: float):
    """In-batch-negatives loss: queries, positives (B, H) unit-norm; ``duplicate`` (B, B) masks columns
    whose positive text equals the row's own (they are not negatives)."""
    import torch

    logits = queries @ positives.T / tau  # (B, B) cosine similarities / temperature
    logits = logits.masked_fill(duplicate, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, torch.arange(len(queries), device=queries.device))


def train_embedder(
    *,
    config: EmbedConfig,
    train: Sequence[tuple[str, str]],
    validation: Sequence[tuple[str, str]],
    runtime: Runtime,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainedEmbedder:
    """Fine-tune the base encoder on ``(query, positive)`` pairs; early-stops on validation MRR if asked."""
    config.validate()
    if len(train) < 2:
        raise MLError("Embedding training needs at least two (query, positive) pairs.")
    from core.ml.retrieval_loop import run_embedding_training

    return run_embedding_training(
        config=config,
        train=list(train),
        validation=list(validation),
        runtime=runtime,
        progress=progress or (lambda _p: None),
        should_stop=should_stop or (lambda: False),
    )


def save_embedder(*, model: TrainedEmbedder, directory: Path, extra_manifest: dict[str, Any]) -> dict:
    """Write ``model`` atomically as the new folder ``directory`` (must not exist); returns the manifest."""
    from core.ml import artifact

    clash = sorted(RESERVED_KEYS & set(extra_manifest))
    if clash:
        raise ArtifactError(f"extra_manifest may not set reserved keys: {', '.join(clash)}.")

    def write(folder: Path) -> dict:
        from safetensors.torch import save_file

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
            "created_at": _utc_now(),
            **extra_manifest,
        }
        artifact.write_manifest(manifest, folder)
        artifact.sync_folder(folder)
        return manifest

    return artifact.publish_folder(Path(directory), write)


def load_embedder(*, directory: Path, runtime: Runtime) -> LoadedEmbedder:
    """Rebuild a saved embedder, verified against its manifest (file hashes, architecture)."""
    from safetensors.torch import load_file

    from core.ml import artifact
    from core.ml.runtime import apply_threads, encoder_from_config, load_tokenizer, resolve_device

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


def _utc_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="seconds")
