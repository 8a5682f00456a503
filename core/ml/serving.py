"""Serving trained classifier versions: loading a predictor, the cache of them, micro-batching, the int8 gate.

A predictor (``core.ml.predictor.Predictor``, the torch side, imported with the first load) owns a merged
model on one device and answers ``predict(texts)`` with labels, probabilities and the version id. Weights
load only in :func:`load_predictor` (never at import) and a process keeps them in one cache
(``core.ml.cache.ModelCache``; :class:`PredictorCache` is that cache with a predictor loader).
:class:`MicroBatcher` merges concurrent single requests into one forward pass. :func:`quantization_gate`
decides whether int8 keeps accuracy for a version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from core.ml.batching import MicroBatcher
from core.ml.cache import ModelCache
from core.ml.errors import MLError
from core.ml.evaluate import compute_metrics
from core.ml.predictions import Prediction, SupportsPredict
from core.ml.runtime import Runtime

if TYPE_CHECKING:
    from core.ml.predictor import Predictor

__all__ = [
    "MicroBatcher",
    "Prediction",
    "PredictorCache",
    "load_predictor",
    "quantization_gate",
]

QUANTIZATION_METHOD = (
    "int8 nn.Linear: weights per output channel, inputs per row at run time (core.ml.quantize)"
)


def _torch_side() -> ModuleType:
    from core.ml import predictor  # torch: loaded with the first predictor, not with this module

    return predictor


def load_predictor(
    *, directory: Path, version: str, runtime: Runtime, quantized: bool = False, trace: bool = True
) -> Predictor:
    """Load a saved version for serving; ``quantized`` serves int8 (CPU only); ``trace`` (CPU only)
    runs a verified TorchScript trace of the model instead of the eager module."""
    return _torch_side().load_predictor(
        directory=directory, version=version, runtime=runtime, quantized=quantized, trace=trace
    )


PredictorLoader = Callable[..., "Predictor"]


class PredictorCache:
    """Loaded predictors keyed by (version, quantized): the one :class:`ModelCache` with a predictor loader
    (for tools and tests that serve classifiers without the registry).

    :meth:`batcher` gives the key's :class:`MicroBatcher` (one per loaded predictor), so concurrent requests
    for the same version share forward passes; evicting a version closes its batcher.
    """

    def __init__(self, *, max_size: int = 4, loader: PredictorLoader = load_predictor) -> None:
        self.models, self._loader = ModelCache(max_size=max_size), loader

    def _load(self, version: str, directory: Path, runtime: Runtime, quantized: bool) -> Callable[[], Any]:
        return lambda: self._loader(
            directory=directory, version=version, runtime=runtime, quantized=quantized
        )

    def get(self, *, version: str, directory: Path, runtime: Runtime, quantized: bool = False) -> Predictor:
        return self.models.fetch((version, quantized), self._load(version, directory, runtime, quantized))

    def batcher(
        self,
        *,
        version: str,
        directory: Path,
        runtime: Runtime,
        quantized: bool = False,
        max_batch: int = 32,
        max_wait_ms: float = 0.0,
    ) -> MicroBatcher:
        """The micro-batcher in front of this version's predictor (created with the first request)."""
        load = self._load(version, directory, runtime, quantized)
        return self.models.batcher((version, quantized), load, max_batch=max_batch, max_wait_ms=max_wait_ms)

    def keys(self) -> list[tuple[str, bool | str]]:
        """Cached keys, least recently used first."""
        return self.models.keys()

    def evict(self, version: str) -> None:
        self.models.evict(version)


def _accuracy_and_f1(
    predictor: SupportsPredict, rows: Sequence[tuple[str, str]]
) -> tuple[float, float, list[str]]:
    predictions = predictor.predict([text for text, _ in rows])
    predicted = [p.label for p in predictions]
    metrics = compute_metrics(
        gold=[label for _, label in rows],
        predicted=predicted,
        confidences=[p.probabilities[p.label] for p in predictions],
        labels=list(predictions[0].probabilities),
    )
    return metrics.accuracy, metrics.macro_f1, predicted


def int8_within(float_accuracy: float, quantized_accuracy: float, tolerance: float) -> bool:
    """Whether int8 loses at most ``tolerance`` of accuracy. Compared with a margin for the float arithmetic:
    on 200 held-out rows one row is exactly half a point, and 0.805 - 0.8 is 0.00500000000000006."""
    return float_accuracy - quantized_accuracy <= tolerance + 1e-9


def _bf16_gate(
    float_predictor: Predictor,
    rows: Sequence[tuple[str, str]],
    float_accuracy: float,
    float_labels: list[str],
    tolerance: float,
) -> dict:
    """The bf16 encoder's accuracy on the gate's rows (``core.ml.bf16``), measured only where bf16 pays on
    this host (elsewhere it is a slow reference loop, and a version trained there serves int8 or float)."""
    from core.ml.bf16 import bf16_pays  # torch: with the gate's first predictor

    if not bf16_pays():
        return {"use_bf16": False, "bf16": "not measured: bf16 is not the fastest product on this host"}
    started = time.perf_counter()
    bf16_acc, bf16_f1, bf16_labels = _accuracy_and_f1(_torch_side().bf16_copy(float_predictor), rows)
    return {
        "bf16_accuracy": bf16_acc,
        "bf16_macro_f1": bf16_f1,
        "bf16_agreement": sum(a == b for a, b in zip(float_labels, bf16_labels, strict=True)) / len(rows),
        "bf16_seconds": time.perf_counter() - started,
        "use_bf16": int8_within(float_accuracy, bf16_acc, tolerance),
    }


def quantization_gate(
    *, directory: Path, rows: Sequence[tuple[str, str]], runtime: Runtime, tolerance: float = 0.005
) -> dict:
    """Float vs int8 accuracy on held-out ``rows``; int8 is used when it loses at most ``tolerance``. Where
    bf16 pays on this host, bf16's too (``use_bf16``: batch work may run the bf16 encoder, ``core.ml.bf16``).

    ``tolerance`` is in accuracy units (0.005 = half a point). Being more accurate never disqualifies int8.
    """
    if not rows:
        raise MLError("The quantization gate needs held-out rows.")
    cpu = replace(runtime, device="cpu")
    float_predictor = load_predictor(directory=directory, version="gate", runtime=cpu)
    quantized = _torch_side().int8_copy(float_predictor, kernel=runtime.int8_kernel)
    started = time.perf_counter()
    float_acc, float_f1, float_labels = _accuracy_and_f1(float_predictor, rows)
    float_s, started = time.perf_counter() - started, time.perf_counter()
    quant_acc, quant_f1, quant_labels = _accuracy_and_f1(quantized, rows)
    quant_s = time.perf_counter() - started
    agreement = sum(a == b for a, b in zip(float_labels, quant_labels, strict=True)) / len(rows)
    return {
        **_bf16_gate(float_predictor, rows, float_acc, float_labels, tolerance),
        "method": QUANTIZATION_METHOD,
        "n": len(rows),
        "float_accuracy": float_acc,
        "quantized_accuracy": quant_acc,
        "float_macro_f1": float_f1,
        "quantized_macro_f1": quant_f1,
        "agreement": agreement,
        "tolerance": tolerance,
        "use_quantized": int8_within(float_acc, quant_acc, tolerance),
        "float_seconds": float_s,
        "quantized_seconds": quant_s,
    }
