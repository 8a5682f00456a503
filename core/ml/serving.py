"""Serving trained versions: a predictor per version, an LRU cache of them, a micro-batcher and the int8 gate.

A :class:`Predictor` owns a merged model on one device and answers ``predict(texts)`` with labels,
probabilities and the version id. Weights load only in :func:`load_predictor` (never at import) and a
process keeps them in a :class:`PredictorCache`. :class:`MicroBatcher` merges concurrent single requests
into one forward pass. :func:`quantization_gate` decides whether dynamic int8 keeps accuracy for a version.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.ml.batching import MicroBatcher
from core.ml.cache import ModelCache
from core.ml.errors import MLError
from core.ml.predictions import Prediction, SupportsPredict, to_predictions
from core.ml.runtime import Runtime

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from core.ml.lexical import LexicalModel
    from core.ml.modeling import TextClassifier

__all__ = [
    "MicroBatcher",
    "Prediction",
    "Predictor",
    "PredictorCache",
    "load_predictor",
    "quantization_gate",
]

QUANTIZATION_METHOD = (
    "dynamic-int8, per-channel weights (torch.ao.quantization.quantize_dynamic on nn.Linear)"
)


class Predictor:
    """A loaded version: ``predict(texts)`` runs length-sorted batches under ``torch.inference_mode``."""

    def __init__(
        self,
        *,
        model: TextClassifier,
        tokenizer: PreTrainedTokenizerBase,
        labels: Sequence[str],
        version: str,
        device: str,
        max_length: int,
        batch_size: int = 32,
        quantized: bool = False,
        lexical: LexicalModel | None = None,
        blend_weight: float = 1.0,
        traced: Any = None,
    ) -> None:
        self.model, self.tokenizer, self.labels = model, tokenizer, list(labels)
        self.version, self.device, self.quantized = version, device, quantized
        # Dynamic int8 scales activations per forward pass (over every text and padding position in it),
        # so a text's answer would depend on which texts share its batch. A quantized predictor runs each
        # text alone: its answers do not depend on micro-batching or file order, and the gate measures
        # exactly what serves.
        self.max_length, self.batch_size = max_length, 1 if quantized else batch_size
        self.lexical, self.blend_weight = lexical, blend_weight
        self.traced = traced  # a TorchScript trace of ``model`` (CPU), or None to run the eager module
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not safe to call concurrently

    def predict_proba(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, n_labels) probabilities in input order."""
        import torch

        from core.ml.lexical import blend
        from core.ml.modeling import length_sorted_batches

        out = torch.empty((len(texts), len(self.labels)), dtype=torch.float32)
        with torch.inference_mode():
            for idx in length_sorted_batches(texts, self.batch_size):
                batch = self._tokenize([texts[i] for i in idx])
                if self.traced is not None:
                    logits = self.traced(batch["input_ids"], batch["attention_mask"])
                else:
                    logits = self.model(**batch)
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu()
        return blend(out, self.lexical, self.blend_weight, texts)

    def _tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        from core.ml.modeling import tokenize

        with self._tokenizer_lock:
            return tokenize(self.tokenizer, texts, max_length=self.max_length, device=self.device)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if isinstance(texts, str):
            raise MLError("predict() takes a list of texts, not a single string.")
        if not texts:
            return []
        return to_predictions(self.predict_proba(texts), self.labels, self.version)


def quantize_dynamic_int8(model: TextClassifier) -> TextClassifier:
    """A copy of ``model`` with every ``nn.Linear`` as dynamic int8 (CPU only)."""
    import torch
    from torch import nn

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao eager quantisation is deprecated in favour of torchao
        # per-channel weight scales: on BANKING77 they kept accuracy within 0.1-0.5 points where
        # per-tensor scales lost about 0.8 (BENCHMARKS.md), at the same speed
        spec = {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}
        return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False)


def trace_for_cpu(model: TextClassifier, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Any:
    """A TorchScript trace of ``model``, or None when tracing fails or changes the outputs.

    On CPU, most of a short text's latency is Python dispatch inside the encoder; a trace removes it (about 3x
    faster at batch 1 for MiniLM-L6). The example has padding so the traced graph keeps the masking path, and
    the trace is checked against the eager module on padded and unpadded batches before it is used.
    """
    import torch

    from core.ml.modeling import tokenize

    texts = ["a", "a longer example sentence, long enough to need padding"]
    padded = tokenize(tokenizer, texts, max_length=max_length, device="cpu")
    single = tokenize(tokenizer, texts[1:], max_length=max_length, device="cpu")
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarnings and the TorchScript deprecation notice
            traced = torch.jit.trace(
                model, (padded["input_ids"], padded["attention_mask"]), check_trace=False
            )
            for batch in (padded, single):
                if not torch.allclose(
                    traced(batch["input_ids"], batch["attention_mask"]), model(**batch), atol=1e-5
                ):
                    return None
    except Exception:  # any tracing failure means: serve the eager module
        return None
    return traced


def load_predictor(
    *, directory: Path, version: str, runtime: Runtime, quantized: bool = False, trace: bool = True
) -> Predictor:
    """Load a saved version for serving; ``quantized`` applies dynamic int8 (CPU only); ``trace`` (CPU only)
    runs a verified TorchScript trace of the model instead of the eager module."""
    from core.ml.artifact import load_lexical, load_model
    from core.ml.runtime import apply_threads, resolve_device

    apply_threads(runtime)
    model, tokenizer, manifest = load_model(directory=Path(directory), runtime=runtime)
    device = "cpu" if quantized else resolve_device(runtime)
    model = quantize_dynamic_int8(model) if quantized else model.to(device)
    lexical, blend_weight = load_lexical(directory=Path(directory), manifest=manifest)
    max_length = int(manifest["hyperparameters"]["max_length"])
    traced = trace_for_cpu(model, tokenizer, max_length) if trace and device == "cpu" else None
    return Predictor(
        model=model,
        tokenizer=tokenizer,
        labels=manifest["labels"],
        version=version,
        device=device,
        max_length=max_length,
        quantized=quantized,
        lexical=lexical,
        blend_weight=blend_weight,
        traced=traced,
    )


PredictorLoader = Callable[..., Predictor]


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

    def keys(self) -> list[tuple[str, bool]]:
        """Cached keys, least recently used first."""
        return self.models.keys()

    def evict(self, version: str) -> None:
        self.models.evict(version)


def _accuracy_and_f1(
    predictor: SupportsPredict, rows: Sequence[tuple[str, str]]
) -> tuple[float, float, list[str]]:
    from core.ml.evaluate import compute_metrics

    predictions = predictor.predict([text for text, _ in rows])
    predicted = [p.label for p in predictions]
    metrics = compute_metrics(
        gold=[label for _, label in rows],
        predicted=predicted,
        confidences=[p.probabilities[p.label] for p in predictions],
        labels=list(predictions[0].probabilities),
    )
    return metrics.accuracy, metrics.macro_f1, predicted


def quantization_gate(
    *, directory: Path, rows: Sequence[tuple[str, str]], runtime: Runtime, tolerance: float = 0.005
) -> dict:
    """Float vs dynamic-int8 accuracy on held-out ``rows``; int8 is used when it loses at most ``tolerance``.

    ``tolerance`` is in accuracy units (0.005 = half a point). Being more accurate never disqualifies int8.
    """
    if not rows:
        raise MLError("The quantization gate needs held-out rows.")
    cpu = Runtime(base_model_path=runtime.base_model_path, device="cpu", threads=runtime.threads)
    float_predictor = load_predictor(directory=directory, version="gate", runtime=cpu)
    quantized = Predictor(
        model=quantize_dynamic_int8(float_predictor.model),
        tokenizer=float_predictor.tokenizer,
        labels=float_predictor.labels,
        version="gate",
        device="cpu",
        max_length=float_predictor.max_length,
        quantized=True,
        lexical=float_predictor.lexical,
        blend_weight=float_predictor.blend_weight,
    )
    started = time.perf_counter()
    float_acc, float_f1, float_labels = _accuracy_and_f1(float_predictor, rows)
    float_s, started = time.perf_counter() - started, time.perf_counter()
    quant_acc, quant_f1, quant_labels = _accuracy_and_f1(quantized, rows)
    quant_s = time.perf_counter() - started
    agreement = sum(a == b for a, b in zip(float_labels, quant_labels, strict=True)) / len(rows)
    return {
        "method": QUANTIZATION_METHOD,
        "n": len(rows),
        "float_accuracy": float_acc,
        "quantized_accuracy": quant_acc,
        "float_macro_f1": float_f1,
        "quantized_macro_f1": quant_f1,
        "agreement": agreement,
        "tolerance": tolerance,
        "use_quantized": float_acc - quant_acc <= tolerance,
        "float_seconds": float_s,
        "quantized_seconds": quant_s,
    }
