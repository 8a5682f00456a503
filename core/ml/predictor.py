"""A loaded classifier version that answers ``predict(texts)`` (torch code), behind ``core.ml.serving``.

A :class:`Predictor` owns a merged model on one device and answers with labels, probabilities and the
version id; it runs a verified TorchScript trace of its encoder on CPU when one matches the eager module, and
the int8 copy of the model when the version passed the gate (``core.ml.serving.quantization_gate``): int8
with a scale per row (``core.ml.quantize``), run in batches of texts of one token length, so that a text's
answer never depends on the texts beside it.

Every answer is two steps, exposed so that several heads can share one encoder pass
(``core.registry.services.serving.predict_shared``): :meth:`Predictor.embed` (the encoder: tokenise, encode,
mean-pool, normalise; the costly part) and :meth:`Predictor.head_proba` (the linear head, softmax and the
lexical blend; a few percent of the time). ``encoder_key`` names the encoder's weights: two predictors with
the same key compute the same embeddings, so one's ``embed`` feeds the other's ``head_proba``.

A version trained with a text form (``core.ml.textforms``: named in its manifest's hyper-parameters) reads
every text in that form: :meth:`Predictor.embed` and :meth:`Predictor.head_proba` each put the raw texts they
are given in it, so every caller passes texts as they came; the form is part of ``encoder_key``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from core.ml import textforms
from core.ml.artifact import WEIGHTS, load_lexical, load_model, load_ood, load_temperature
from core.ml.bf16 import bf16_encoder
from core.ml.calibration import apply_temperature
from core.ml.errors import MLError
from core.ml.lexical import LexicalModel, blend
from core.ml.modeling import TextClassifier, token_batches, trace_checked
from core.ml.ood import OutOfScope
from core.ml.predictions import Prediction, to_predictions
from core.ml.quantize import quantize_rows_int8
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
        encoder_key: str = "",
        ood: OutOfScope | None = None,
        temperature: float = 1.0,
        bf16: bool = False,
        text_form: str = "",
    ) -> None:
        self.model, self.tokenizer, self.labels = model, tokenizer, list(labels)
        self.version, self.device, self.quantized = version, device, quantized
        # a bf16 copy of the encoder (``core.ml.bf16``: batch work where AMX makes it the fastest), batched as
        # float is (sorted by token count, padded to each batch's longest): AMX pays on whole batches, and a
        # job's 64 documents held texts of one token count two at a time (bf16 then ran slower than int8)
        self.bf16 = bf16
        # The int8 path scales each row (token) by its own range (``core.ml.quantize``), and a quantized
        # predictor batches only texts of one token length (no padding): every text gets exactly the
        # vectors it gets alone, so answers do not depend on micro-batching or file order, and the gate
        # measures exactly what serves.
        self.max_length, self.batch_size = max_length, batch_size
        self.lexical, self.blend_weight = lexical, blend_weight
        self.ood = ood  # the out-of-scope model (``core.ml.ood``), or None: predictions carry no ``in_scope``
        self.temperature = temperature  # calibration of the final probabilities (core.ml.calibration)
        self.traced = traced  # a TorchScript trace of ``model.embed`` (CPU), or None to run the eager module
        # identical for predictors whose encoders compute the same embeddings (see the module docstring);
        # a predictor built by hand shares with nobody
        self.encoder_key = encoder_key or f"own:{id(self)}"
        self._tokenizer_lock = threading.Lock()  # fast tokenizers are not safe to call concurrently
        # what the version reads of a text (``core.ml.textforms``; an unknown name fails the load)
        self.text_form = text_form
        self.form = textforms.text_form(text_form)

    def model_texts(self, texts: Sequence[str]) -> list[str]:
        """``texts`` as this version reads them (its text form; as given without one)."""
        return textforms.in_form(self.form, texts)

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, H) unit-length sentence embeddings in input order: the encoder pass, length-sorted batches."""
        out = torch.empty((len(texts), self.model.head.in_features), dtype=torch.float32)
        texts = self.model_texts(texts)
        with self._tokenizer_lock:  # tokenised at once (batched by token count: little or no padding)
            batches = list(
                token_batches(
                    self.tokenizer,
                    texts,
                    max_length=self.max_length,
                    batch_size=self.batch_size,
                    device=self.device,
                    equal_length=self.quantized,
                )
            )
        with torch.inference_mode():
            for idx, batch in batches:
                out[idx] = self._encode(batch["input_ids"], batch["attention_mask"]).float().cpu()
        return out

    def _encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One batch through the encoder (the traced one when there is one): (B, T) -> (B, H)."""
        if self.traced is not None:
            return self.traced(input_ids, attention_mask)
        return self.model.embed(input_ids, attention_mask)

    def head_proba(self, embeddings: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """(N, n_labels) probabilities from (N, H) embeddings of ``texts`` (the texts feed the lexical member
        of a blended version; the neural part reads only the embeddings)."""
        with torch.inference_mode():
            logits = self.model.head(embeddings.to(self.device))  # an int8 head scales each row alone
            out = torch.softmax(logits.float(), dim=-1).cpu()
        if self.lexical is not None:
            out = blend(out, self.lexical, self.blend_weight, self.model_texts(texts))
        return apply_temperature(out, self.temperature)

    def predict_proba(self, texts: Sequence[str]) -> torch.Tensor:
        """(N, n_labels) probabilities in input order."""
        return self.head_proba(self.embed(texts), texts)

    def predictions(
        self, embeddings: torch.Tensor, texts: Sequence[str], *, in_scope: bool = True
    ) -> list[Prediction]:
        """Predictions from (N, H) embeddings of ``texts``: :meth:`head_proba`, plus ``in_scope`` when the
        version has an out-of-scope model (``in_scope=False``: not scored, for a caller that does not read
        it: the score compares each text with every training row)."""
        proba = self.head_proba(embeddings, texts)
        scopes = None
        if self.ood is not None and in_scope:
            top = proba.max(dim=-1).values.numpy()
            scopes = self.ood.in_scope(embeddings.float().cpu().numpy(), top).tolist()
        return to_predictions(proba, self.labels, self.version, scopes)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if isinstance(texts, str):
            raise MLError("predict() takes a list of texts, not a single string.")
        if not texts:
            return []
        return self.predictions(self.embed(texts), texts)


def embeds_like(predictor: Predictor, embedder: Any, texts: Sequence[str], *, int8: bool = False) -> bool:
    """Whether ``predictor.embed(texts)`` gives the vectors ``embedder.embed(texts)`` gives, so that one pass
    can serve both (a chat message classified, then searched for in the knowledge base): ``embedder`` is the
    base encoder (``core.ml.embedder.BaseEmbedder``: it has an ``identity``), the predictor's encoder is that
    frozen base (a "head" version: ``encoder_key``) served in float on the same device, and no text is cut
    by either's token limit (beyond it the two truncate differently). Float noise aside: a traced encoder
    agrees with the eager one to 1e-5 (``trace_for_cpu``).

    A quantised encoder computes other vectors: its row int8 copy of the same base is within about 0.993
    cosine of float (``bench/int8_queries.py``). ``int8`` accepts them as the float ones (a knowledge-base
    question searched with the intent model's int8 pass: the same recall, 98% of the bot's decisions the
    same, the rest within a threshold's hair of it; measured there)."""
    identity = getattr(embedder, "identity", None)
    if (predictor.quantized and not int8) or not isinstance(identity, dict):
        return False
    if getattr(embedder, "device", None) != predictor.device:
        return False
    if predictor.form is not None and any(predictor.form(text) != text for text in texts):
        return False  # the predictor embedded the texts in its form; the embedder reads them as given
    path = f"int8@{predictor.device}" if predictor.quantized else f"float@{predictor.device}"
    if not predictor.encoder_key.startswith(
        f"base:{identity.get('sha256')}:"
    ) or not predictor.encoder_key.endswith(f":{path}"):
        return False
    limit = min(predictor.max_length, int(getattr(embedder, "max_length", 0)))
    with predictor._tokenizer_lock:
        ids = predictor.tokenizer(list(texts), truncation=False)["input_ids"]
    return all(len(row) <= limit for row in ids)


class _Encoder(nn.Module):
    """``model.embed`` as a module's forward, so the encoder alone can be traced (the head stays eager: it is
    one small matrix product, and heads that share an encoder pass run on embeddings)."""

    def __init__(self, model: TextClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.embed(input_ids, attention_mask)


def trace_for_cpu(model: TextClassifier, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Any:
    """A checked TorchScript trace of ``model``'s encoder (``model.embed``: (B, T) -> (B, H)), or None
    (``core.ml.modeling.trace_checked``)."""
    return trace_checked(_Encoder(model), tokenizer, max_length)


def load_predictor(
    *, directory: Path, version: str, runtime: Runtime, quantized: bool = False, trace: bool = True
) -> Predictor:
    """Load a saved version for serving; ``quantized`` serves int8 (``core.ml.quantize``, CPU only); ``trace``
    (CPU only) runs a verified TorchScript trace of the model instead of the eager module."""
    apply_threads(runtime)
    model, tokenizer, manifest = load_model(directory=Path(directory), runtime=runtime)
    device = "cpu" if quantized else resolve_device(runtime)
    model = quantize_rows_int8(model, kernel=runtime.int8_kernel) if quantized else model.to(device)
    lexical, blend_weight = load_lexical(directory=Path(directory), manifest=manifest)
    max_length = int(manifest["hyperparameters"]["max_length"])
    traced = trace_for_cpu(model, tokenizer, max_length) if trace and device == "cpu" else None
    return Predictor(
        ood=load_ood(directory=Path(directory), manifest=manifest),
        encoder_key=encoder_key(manifest, device=device, quantized=quantized),
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
        temperature=load_temperature(manifest),
        text_form=textforms.manifest_form(manifest),
    )


def encoder_key(manifest: dict, *, device: str, quantized: bool) -> str:
    """What identifies a version's encoder as served: a "head" version runs the frozen base model (its
    artifact holds the head alone, and loading checked the base's hash), so every head version on the same
    base, tokenisation length and serving path (device, int8) computes the same embeddings; a fine-tuned
    ("full", or LoRA merged into it) version's encoder is its own weights file. A version with a text form
    embeds texts in that form: its form joins the key (``/<form>``), so it shares a pass only with versions
    that read texts alike."""
    path = f"{'int8' if quantized else 'float'}@{device}"
    form = textforms.manifest_form(manifest)
    form = f"/{form}" if form else ""
    if manifest.get("weights") == "head":
        base = manifest["base_model"]["sha256"]
        return f"base:{base}:{manifest['hyperparameters']['max_length']}{form}:{path}"
    return f"weights:{manifest['files'][WEIGHTS]}{form}:{path}"


def _copy_key(key: str, path: str) -> str:
    """The encoder key of a float predictor's int8 or bf16 copy (``path``: "int8@cpu", "bf16@cpu"; a
    hand-built predictor's copy shares with nobody)."""
    return "" if key.startswith("own:") else f"{key.rsplit(':', 1)[0]}:{path}"


def int8_copy(predictor: Predictor, *, kernel: str = "auto") -> Predictor:
    """The same version served in int8 (what the gate measures against the float model); ``kernel``: see
    ``core.ml.quantize.matmul_kernel``."""
    return Predictor(
        model=quantize_rows_int8(predictor.model, kernel=kernel),
        tokenizer=predictor.tokenizer,
        labels=predictor.labels,
        version=predictor.version,
        device="cpu",
        max_length=predictor.max_length,
        quantized=True,
        lexical=predictor.lexical,
        blend_weight=predictor.blend_weight,
        encoder_key=_copy_key(predictor.encoder_key, "int8@cpu"),
        ood=predictor.ood,
        temperature=predictor.temperature,
        text_form=predictor.text_form,
    )


def bf16_copy(predictor: Predictor) -> Predictor:
    """The same version with its encoder in bf16 on CPU (``core.ml.bf16``): what the gate measures against
    the float model, and what batch work runs where bf16 pays."""
    return Predictor(
        model=bf16_encoder(predictor.model),  # type: ignore[arg-type]
        tokenizer=predictor.tokenizer,
        labels=predictor.labels,
        version=predictor.version,
        device="cpu",
        max_length=predictor.max_length,
        batch_size=predictor.batch_size,
        lexical=predictor.lexical,
        blend_weight=predictor.blend_weight,
        encoder_key=_copy_key(predictor.encoder_key, "bf16@cpu"),
        ood=predictor.ood,
        temperature=predictor.temperature,
        bf16=True,
        text_form=predictor.text_form,
    )
