"""The model family, in one readable file: a sentence encoder, and the classifier on top of it.

The embedder is the pretrained transformer encoder, attention-masked mean pooling and L2 normalisation
(:func:`encode`); ``TextClassifier`` adds one linear head. The same modules serve every training method
("head", "lora", "full") and are what serving loads, so a trained model and a reloaded artifact run the exact
same forward pass. Loading the encoder and tokenizer from a local folder (always offline) and the
tokenisation helpers live here too.

transformers is imported here, at module level: its lazy attribute loading is not thread-safe, and a
warm-up thread loading a model while a request thread did the same once failed with ``ImportError: cannot
import name AutoModel``. Python's import lock makes this module's import safe to race.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars while loading (the dropped pooler is expected)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        hf_logging.enable_progress_bar()


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """Load a tokenizer from a local folder, never touching the network."""
    with quiet_transformers():
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def load_encoder(folder: Path) -> PreTrainedModel:
    """Load the pretrained encoder (no pooler: we mean-pool) from a local folder, offline."""
    with quiet_transformers():
        return AutoModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False)


def encoder_from_config(folder: Path) -> PreTrainedModel:
    """An encoder with uninitialised weights from a saved ``config.json`` (weights are loaded afterwards)."""
    with quiet_transformers():
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        return AutoModel.from_config(config, add_pooling_layer=False)


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token states over real tokens: hidden (B, T, H), mask (B, T) -> (B, H)."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    summed = (hidden * weights).sum(dim=1)
    return summed / weights.sum(dim=1).clamp(min=1e-9)


def encode(
    encoder: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int,
    device: str,
) -> torch.Tensor:
    """Unit-length sentence embeddings (B, H) of one batch (gradients flow if enabled): the embedder."""
    batch = tokenize(tokenizer, texts, max_length=max_length, device=device)
    return encode_tokens(encoder, batch, device=device)


def encode_tokens(encoder: nn.Module, batch: dict[str, torch.Tensor], *, device: str) -> torch.Tensor:
    """``encode`` of a batch already tokenised (input_ids and attention_mask on ``device``)."""
    with autocast(device):
        hidden = encoder(**batch).last_hidden_state  # (B, T, H)
    return nn.functional.normalize(mean_pool(hidden.float(), batch["attention_mask"]), dim=-1)


def autocast(device: str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA; nothing on CPU."""
    if device == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class TextClassifier(nn.Module):
    """Encoder -> mean pool -> L2 normalise -> linear head producing (B, n_labels) logits."""

    def __init__(self, encoder: PreTrainedModel, n_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        hidden = int(encoder.config.hidden_size)
        self.head = nn.Linear(hidden, n_labels)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings (B, H), unit length."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        # pooled in float32 (a bf16 encoder's states too: ``core.ml.bf16``); a no-op for a float32 encoder
        pooled = mean_pool(out.last_hidden_state.float(), attention_mask)
        return nn.functional.normalize(pooled, dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(input_ids, attention_mask))


def token_batches(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int,
    device: str,
    equal_length: bool = False,
) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """(indices, input_ids and attention_mask on ``device``) batches of ``texts``, tokenised once and sorted
    by their token count, so a batch pads little: sorted by characters, 1,000 tweets padded 12,514 tokens in
    batches of 32, sorted by tokens 970, and the float encoder took 6.3 instead of 7.9-9.5 ms a tweet.
    ``equal_length``: each batch holds texts of one token count only (no padding at all; the int8 path, whose
    answers then do not depend on the batch: ``core.ml.predictor``)."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    if equal_length:
        groups: dict[int, list[int]] = {}
        for i in order:
            groups.setdefault(len(ids[i]), []).append(i)
        batches = [g[s : s + batch_size] for g in groups.values() for s in range(0, len(g), batch_size)]
    else:
        batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    left = getattr(tokenizer, "padding_side", "right") == "left"
    for idx in batches:
        width = max(len(ids[i]) for i in idx)
        input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(ids[i])
            where = slice(width - n, width) if left else slice(0, n)
            input_ids[row, where] = torch.tensor(ids[i], dtype=torch.long)
            mask[row, where] = 1
        yield idx, {"input_ids": input_ids.to(device), "attention_mask": mask.to(device)}


def tokenize(
    tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], *, max_length: int, device: str
) -> dict[str, torch.Tensor]:
    """Tokenise a batch with dynamic padding; returns input_ids and attention_mask on ``device``."""
    enc = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}


def trace_checked(module: nn.Module, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Any:
    """A TorchScript trace of ``module`` ((input ids, attention mask) -> (B, H), on CPU), or None when
    tracing fails or changes the outputs.

    On CPU, most of a short text's latency is Python dispatch inside the encoder; a trace removes it (about 3x
    faster at batch 1 for MiniLM-L6). The example has padding so the traced graph keeps the masking path, and
    the trace is checked against the eager module on padded and unpadded batches before it is used.
    """
    texts = ["a", "a longer example sentence, long enough to need padding"]
    padded = tokenize(tokenizer, texts, max_length=max_length, device="cpu")
    single = tokenize(tokenizer, texts[1:], max_length=max_length, device="cpu")
    module = module.eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarnings and the TorchScript deprecation notice
            traced = torch.jit.trace(
                module, (padded["input_ids"], padded["attention_mask"]), check_trace=False
            )
            for batch in (padded, single):
                if not torch.allclose(
                    traced(batch["input_ids"], batch["attention_mask"]), module(**batch), atol=1e-5
                ):
                    return None
    except Exception:  # noqa: BLE001 - any tracing failure means: run the eager module
        return None
    return traced


def _batched(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    compute: Callable[..., torch.Tensor],
    width: int,
    *,
    max_length: int,
    batch_size: int,
    device: str,
) -> torch.Tensor:
    """Run ``compute(**tokens)`` over batches sorted by token count; rows (N, width) come back in input
    order."""
    out = torch.empty((len(texts), width), dtype=torch.float32)
    for idx, batch in token_batches(
        tokenizer, texts, max_length=max_length, batch_size=batch_size, device=device
    ):
        out[idx] = compute(**batch).float().cpu()
    return out


@torch.inference_mode()
def embed_texts(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int,
    device: str,
) -> torch.Tensor:
    """Unit-length embeddings (N, H) in input order, computed in length-sorted batches."""
    return _batched(
        tokenizer,
        texts,
        model.embed,
        model.head.in_features,
        max_length=max_length,
        batch_size=batch_size,
        device=device,
    )


@torch.inference_mode()
def predict_proba(
    model: TextClassifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    *,
    max_length: int,
    batch_size: int,
    device: str,
) -> torch.Tensor:
    """Class probabilities (N, n_labels) in input order."""

    def probabilities(**batch: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(**batch).float(), dim=-1)

    return _batched(
        tokenizer,
        texts,
        probabilities,
        model.head.out_features,
        max_length=max_length,
        batch_size=batch_size,
        device=device,
    )
