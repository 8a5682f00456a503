"""Batch work in bfloat16 on CPUs whose bf16 product is fast (AMX): an encoder copy, and whether it pays.

Intel Xeons with AMX multiply bf16 matrices in hardware tiles: an encoder layer's (1,600 x 384) x
(384 x 1,536) product took 1.26 ms in bf16 against 11.8 in float32 and 2.9 with ``torch._int_mm`` on one
thread, and the whole MiniLM encoder on batches of tweets 1.6 ms a text against 4.0 for the row int8 path
and 5.4 for float32 (BENCHMARKS.md section 16, twelfth-session addendum). Its vectors stay closer to
float32's than int8's do (the lowest cosine over 2,000 tweets: 0.9999 against 0.995). Elsewhere (AVX2 only,
no bf16 instructions) torch falls back to a slow loop, so :func:`bf16_pays` times it once per process and
thread count, as ``core.ml.quantize.matmul_kernel`` does for int8, and bf16 is used only where it is
clearly the fastest.

A bf16 answer may differ from float32's near a decision boundary, so a version serves bf16 only where its gate
(``core.ml.serving.quantization_gate``) measured bf16 on its held-out rows within the same tolerance as int8.
Torch only; no Django.
"""

from __future__ import annotations

import copy
import threading

import torch
from torch import nn

from core.ml.quantize import RowInt8Linear, _best_of, matmul_kernel, per_thread_count

MARGIN = 0.67  # bf16 pays when its product takes at most two thirds of the fastest other kernel's time

_pays: dict[int, bool] = {}  # torch's thread count -> whether bf16 pays in this process
_lock = threading.Lock()


def bf16_pays() -> bool:
    """Whether an encoder layer (384 -> 1,536 on a batch of 16 tweets of 25 tokens) runs clearly faster in
    bf16 than in float32 and than the row int8 layer where int8 serves here (``matmul_kernel`` chose
    ``_int_mm``), its rows' quantisation included: the products alone are close (0.45 against 0.69 ms on one
    thread), the layers not (0.63 against 1.65). Timed once per process and thread count: a few milliseconds
    where bf16 is fast, up to a second where it is a reference loop."""
    return per_thread_count(_pays, _lock, _bf16_clearly_fastest)


def _bf16_clearly_fastest() -> bool:
    generator = torch.Generator().manual_seed(0)
    layer = nn.Linear(384, 1536)
    with torch.no_grad():
        layer.weight.normal_(0.0, 0.05, generator=generator)
    rows = torch.randn((400, 384), generator=generator)
    layer_bf16, rows_bf16 = copy.deepcopy(layer).bfloat16(), rows.bfloat16()
    with torch.inference_mode():
        as_bf16 = _best_of(lambda: layer_bf16(rows_bf16))
        others = [_best_of(lambda: layer(rows))]
        if matmul_kernel("auto") == "int":
            row_int8 = RowInt8Linear(layer, kernel="int")
            others.append(_best_of(lambda: row_int8(rows)))
    return as_bf16 <= MARGIN * min(others)


def bf16_encoder(model: nn.Module) -> nn.Module:
    """A copy of a ``core.ml.modeling.TextClassifier`` (on CPU) whose encoder holds bf16 weights and computes
    in bf16; the head stays float32 (it reads the float32 embeddings: ``TextClassifier.embed`` pools in
    float32)."""
    out = copy.deepcopy(model).cpu()
    out.encoder = out.encoder.to(torch.bfloat16)
    return out
