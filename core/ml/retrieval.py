"""Embedding (retrieval) models on ``(query, positive)`` pairs: the public entry points (no torch here).

The second task of the runtime, behind knowledge-base search and recommendation: ``train_embedder``,
``save_embedder``, ``load_embedder``, ``load_base_embedder`` and ``evaluate_retrieval`` (recall@k, MRR).
Configs and stats are ``core.ml.types``; the torch code (the model, its loop task, the artifact) is
``core.ml.embedder``, imported when one of these entry points first needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from core.ml.artifact import EMBEDDER_FORMAT as FORMAT
from core.ml.errors import MLError
from core.ml.evaluate import SupportsEmbed, evaluate_retrieval
from core.ml.runtime import Runtime
from core.ml.types import EMBED_METHODS as METHODS
from core.ml.types import EmbedConfig, EmbedStats, Progress

if TYPE_CHECKING:
    from core.ml.embedder import BaseEmbedder, LoadedEmbedder, TrainedEmbedder

__all__ = [
    "FORMAT",
    "METHODS",
    "EmbedConfig",
    "EmbedStats",
    "SupportsEmbed",
    "evaluate_retrieval",
    "load_base_embedder",
    "load_embedder",
    "save_embedder",
    "train_embedder",
]


def _torch_side() -> ModuleType:
    from core.ml import embedder  # torch: loaded with the first embedder, not with this module

    return embedder


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
    return _torch_side().run_embedding_training(
        config=config,
        train=list(train),
        validation=list(validation),
        runtime=runtime,
        progress=progress or (lambda _p: None),
        should_stop=should_stop or (lambda: False),
    )


def save_embedder(*, model: TrainedEmbedder, directory: Path, extra_manifest: dict[str, Any]) -> dict:
    """Write ``model`` atomically as the new folder ``directory`` (must not exist); returns the manifest."""
    return _torch_side().save_embedder(model=model, directory=directory, extra_manifest=extra_manifest)


def load_embedder(*, directory: Path, runtime: Runtime) -> LoadedEmbedder:
    """Rebuild a saved embedder, verified against its manifest (file hashes, architecture)."""
    return _torch_side().load_embedder(directory=directory, runtime=runtime)


def load_base_embedder(*, runtime: Runtime, max_length: int = 256) -> BaseEmbedder:
    """The base encoder as an embedder (what retrieval uses before an organisation trained one)."""
    return _torch_side().load_base_embedder(runtime=runtime, max_length=max_length)
