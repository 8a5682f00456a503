"""A loaded classifier version that answers ``predict(texts)`` (torch code), behind ``core.ml.serving``.

A :class:`Predictor` owns a merged model on one device and answers with labels, probabilities and the
version id; it runs a verified TorchScript trace on CPU when one matches the eager module, and the dynamic
int8 copy of the model when the version passed the gate (``core.ml.serving.quantization_gate``).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from core.ml.artifact import load_lexical, load_model
from core.ml.errors import MLError
from core.ml.lexical import LexicalModel, blend
from core.ml.modeling import TextClassifier, length_sorted_batches, tokenize
from core.ml.predictions import Prediction, to_predictions
from core.ml.runtime import Runtime, apply_threads, resolve_device


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


def int8_copy(predictor: Predictor) -> Predictor:
    """The same version served through dynamic int8 (what the gate measures against the float model)."""
    return Predictor(
        model=quantize_dynamic_int8(predictor.model),
        tokenizer=predictor.tokenizer,
        labels=predictor.labels,
        version=predictor.version,
        device="cpu",
        max_length=predictor.max_length,
        quantized=True,
        lexical=predictor.lexical,
        blend_weight=predictor.blend_weight,
    )
