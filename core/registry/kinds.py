"""Model kinds: what a model *is* (a classifier, an embedder, ...), behind one small protocol.

Training, promotion, serving, batch inference, warm-up and rollback call a version's kind and never branch on
it. A kind is registered once per process with :func:`register_kind` (core's two from
``RegistryConfig.ready``; a product adds its own from its ``AppConfig.ready``, before it registers its
product: a two-tower model of users and items would, ``tests/core/fake_product`` does) and is looked up by
the name stored on ``ModelVersion.kind``.

The protocol (every method keyword-only):

- ``check_settings(config, search, follow_up)`` -> the config that will train (raises ``InvalidInput``);
- ``train(job, rows, config, search, runtime, progress, reporter)`` -> :class:`Trained` (evaluated on the
  held-out rows it chose);
- ``save(model, directory, extra_manifest)`` -> the manifest (writes the artifact folder);
- ``after_store(version, held_out, reporter)``: work on the stored version before promotion (the classifier's
  int8 gate);
- ``load(directory, name, runtime, quantized)`` -> the loaded model that serves (kept in the one model
  cache, ``core.registry.services.serving``);
- ``score(model, rows)`` -> (score, metric): what promotion compares, higher is better;
- ``run(model, texts)``: the kind's operation on texts (``predict`` or ``embed``), used by the warm-up.

This module is a leaf (it imports nothing of the registry), so ``core.products`` can check the kind names a
product declares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from core.errors import InvalidInput

Rows = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Trained:
    """What a kind's ``train`` hands back: the model in memory and how it did on the held-out rows."""

    model: Any  # what the kind's ``save`` writes
    method: str
    labels: list[str]
    metrics: dict[str, Any]  # stored on the version
    held_out: list[tuple[str, str]]  # the rows promotion compares challenger and incumbent on
    summary: dict[str, Any] = field(default_factory=dict)  # what the job's result shows of the metrics
    extra: dict[str, Any] = field(default_factory=dict)  # further result keys (a search's trials)


class ModelKind(Protocol):
    name: str  # stored on ModelVersion.kind
    dataset_task: str  # the core.ml.datasets task it trains on ("classification", "pairs")
    operation: str  # what it answers: "predict" (labels) or "embed" (vectors)
    misuse: str  # the error when asked for the other operation
    batched: bool  # whether online requests share forward passes (a MicroBatcher calls ``predict``)

    def check_settings(
        self,
        *,
        config: dict[str, Any] | None,
        search: dict[str, Any] | None,
        follow_up: dict[str, Any] | None,
    ) -> dict[str, Any]: ...

    def train(
        self,
        *,
        job: Any,
        rows: dict[str, list[tuple[str, str]]],
        config: dict[str, Any],
        search: dict[str, Any] | None,
        runtime: Any,
        progress: Any,
        reporter: Any,
    ) -> Trained: ...

    def save(self, *, model: Any, directory: Path, extra_manifest: dict[str, Any]) -> dict: ...

    def after_store(self, *, version: Any, held_out: Rows, reporter: Any) -> None: ...

    def load(self, *, directory: Path, name: str, runtime: Any, quantized: bool) -> Any: ...

    def score(self, *, model: Any, rows: Rows) -> tuple[float, str]: ...

    def run(self, *, model: Any, texts: list[str]) -> Any: ...


_KINDS: dict[str, ModelKind] = {}


def register_kind(kind: ModelKind) -> None:
    """Register a kind under its name (once per process; the same object again is a no-op)."""
    current = _KINDS.get(kind.name)
    if current is not None and current is not kind and type(current) is not type(kind):
        raise ValueError(f"Model kind '{kind.name}' is registered twice.")
    _KINDS[kind.name] = kind


def kind_names() -> list[str]:
    return list(_KINDS)


def get_kind(name: str) -> ModelKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise InvalidInput(f"Unknown model kind '{name}'; known: {', '.join(_KINDS) or 'none'}.") from None


def kind_of(version: Any) -> ModelKind:
    """The kind of a stored ``ModelVersion``."""
    return get_kind(version.kind)


def kind_for_training(*, declared: str | None, dataset_task: str) -> ModelKind:
    """The kind that trains a dataset: the one the product declares for the model task when it trains on this
    dataset's task, else the first registered kind that trains on it (core's: classification -> classifier,
    pairs -> embedding)."""
    if declared is not None and declared in _KINDS and _KINDS[declared].dataset_task == dataset_task:
        return _KINDS[declared]
    for kind in _KINDS.values():
        if kind.dataset_task == dataset_task:
            return kind
    raise InvalidInput(f"No model kind trains on '{dataset_task}' datasets.", details={"field": "dataset"})
