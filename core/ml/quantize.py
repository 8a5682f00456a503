"""Int8 serving with a scale per row: a text's answer does not depend on the texts beside it.

``RowInt8Linear`` replaces an ``nn.Linear`` on CPU: its weights are int8 with a scale per output channel, and
each input row (one token of one text) is quantised with its own scale, taken from that row's range at run
time; the product is ``torch._int_mm`` (int8 x int8 -> int32, exact) and the scales are applied to the int32
result. Nothing in a row's answer reads another row, so a batch of texts of one token length (no padding)
gives each text exactly the vectors it gets alone, and the predictor batches its int8 path
(``core.ml.predictor``). Per-row scales also follow each token's own range where per-tensor dynamic int8
(``torch.ao.quantization.quantize_dynamic``) takes one range for every token of every text in the call: on
the twitter financial news sentiment set the frozen encoder's embeddings keep a cosine of 0.999 to float's,
against 0.94-0.98 (``bench/int8_batching.py``, BENCHMARKS.md section 16).

The feed-forward block's second layer reads the GELU's output, almost all of it positive: its rows also get a
zero point (their [min, max] mapped onto 254 levels), so they keep their resolution. Torch only; no Django.

**The product's kernel is chosen per machine** (``matmul_kernel``). ``torch._int_mm`` is fast where the
CPU has int8 dot-product instructions (AVX-512 VNNI, AMX) and a reference loop where it has not: on an AMD
EPYC with AVX2 only it took 30 ms for a (32 x 384) x (384 x 1536) product that float32 does in 0.6 ms, and a
text's int8 embedding 187 ms against float's 13 (BENCHMARKS.md section 24). The same integer product is exact
in float32 (each term is at most 128 x 127: a sum passes 2**24, the last of float32's exact integers, only
if a thousand of a row's terms sit at that extreme with one sign), so the ``"float"`` kernel multiplies the
int8 values held as float32: bit for bit the same answers, at about float's speed, with a float copy of the
int8 weights. ``"auto"`` times both kernels once per process and thread count and keeps the faster; where
that is float32, int8 brings nothing and the registry serves the version's float model
(``core.registry.services.serving.serves_int8``).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

M = TypeVar("M", bound=nn.Module)
T = TypeVar("T")

LEVELS = 254.0  # steps between a row's min and max: the rounded extremes stay inside int8 (-128 .. 126/127)
KERNELS = ("auto", "int", "float")  # how the int8 product is computed: chosen by timing, ``_int_mm``, float32

_kernel_choice: dict[int, str] = {}  # torch's thread count -> the kernel ``auto`` chose in this process
_kernel_lock = threading.Lock()


def _best_of(call, repeats: int = 3) -> float:
    call()  # the first call pays for allocations and the library's own set-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def matmul_kernel(kernel: str = "auto") -> str:
    """``"int"`` (``torch._int_mm``) or ``"float"`` (the int8 values multiplied as float32: the same
    integers). ``"auto"``: whichever computes a layer's product faster here, timed once per process and thread
    count on an encoder layer's shape (a few milliseconds; 0.1 s where ``_int_mm`` is the slow one)."""
    if kernel not in KERNELS:
        raise ValueError(f"Unknown int8 kernel {kernel!r}; use one of {', '.join(KERNELS)}.")
    if kernel != "auto":
        return kernel
    return per_thread_count(_kernel_choice, _kernel_lock, _faster_kernel)


def _faster_kernel() -> str:
    generator = torch.Generator().manual_seed(0)
    q = torch.randint(-127, 128, (32, 384), dtype=torch.int8, generator=generator)
    weight_t = torch.randint(-127, 128, (384, 384), dtype=torch.int8, generator=generator)
    q_float, weight_float = q.float(), weight_t.float()
    with torch.inference_mode():
        as_int = _best_of(lambda: torch._int_mm(q, weight_t))
        as_float = _best_of(lambda: torch.mm(q_float, weight_float))
    return "int" if as_int <= as_float else "float"


def per_thread_count(known: dict[int, T], lock: threading.Lock, measure: Callable[[], T]) -> T:
    """``known``'s answer for torch's current thread count, ``measure()``d once per process and count: the
    first callers wait on ``lock``, later ones read without it (every request asks)."""
    threads = torch.get_num_threads()
    found = known.get(threads)
    if found is not None:
        return found
    with lock:
        found = known.get(threads)
        if found is None:
            found = known[threads] = measure()
    return found


class RowInt8Linear(nn.Module):
    """``linear`` with int8 weights (a scale per output channel) and int8 inputs (a scale per row, at run
    time; with ``zero_point`` also a zero point per row, for inputs that are mostly of one sign)."""

    weight_t: torch.Tensor
    weight_t_float: torch.Tensor | None
    weight_scale: torch.Tensor
    column_sums: torch.Tensor
    bias: torch.Tensor

    def __init__(self, linear: nn.Linear, *, zero_point: bool = False, kernel: str = "auto") -> None:
        super().__init__()
        weight = linear.weight.detach().float().cpu()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        quantized = torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.zero_point = zero_point
        self.register_buffer("weight_t", quantized.t())  # (in, out): ``_int_mm`` reads it transposed
        self.register_buffer("weight_scale", scale)
        # the zero point's share of the product: z x (the column sums of the int8 weights)
        self.register_buffer("column_sums", quantized.to(torch.int32).sum(dim=1).float())
        bias = linear.bias.detach().float().cpu() if linear.bias is not None else torch.zeros(scale.shape)
        self.register_buffer("bias", bias)
        self.kernel = matmul_kernel(kernel)
        # the int8 weights as float32 for the float kernel (exact: small integers); not saved with the state
        weight_float = quantized.t().float() if self.kernel == "float" else None
        self.register_buffer("weight_t_float", weight_float, persistent=False)

    def _product(self, q: torch.Tensor) -> torch.Tensor:
        """The exact int8 product of ``q`` (whole numbers in int8's range, held as float32) and the weights,
        as float32."""
        if self.weight_t_float is not None:
            return torch.mm(q, self.weight_t_float)
        return torch._int_mm(q.to(torch.int8), self.weight_t).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).float()
        # (separate reductions: ``torch.aminmax`` along rows is about ten times slower on CPU)
        if self.zero_point:
            low = rows.amin(dim=1, keepdim=True)
            step = (rows.amax(dim=1, keepdim=True) - low).mul_(1.0 / LEVELS).clamp_(min=1e-12)
            inverse = step.reciprocal()
            zero = low.mul(inverse).round_().add_(128.0)  # x ~ step * (q + zero): q = round(x / step) - zero
            q = rows.mul(inverse).sub_(zero).round_().clamp_(-128.0, 127.0)
            product = self._product(q).addr_(zero.squeeze(1), self.column_sums)
        else:
            step = rows.abs().amax(dim=1, keepdim=True).mul_(1.0 / 127.0).clamp_(min=1e-12)
            q = rows.mul(step.reciprocal()).round_().clamp_(-128.0, 127.0)
            product = self._product(q)
        out = product.mul_(step).mul_(self.weight_scale).add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features)


class FusedRowInt8(nn.Module):
    """Sibling linear layers that read one input (an attention block's query, key and value) as one
    ``RowInt8Linear`` over their stacked weights: the input is quantised once and multiplied once, and each
    ``_Part`` takes its slice of the result. Weight scales are per output channel and the input's per row, so
    every slice is what its own layer would give, to the bit. When a part is asked about an input the last
    product was not of (another thread's forward came between, or a model that feeds its parts different
    inputs), it computes again: only the work is shared, never an answer."""

    def __init__(self, linears: list[nn.Linear], *, kernel: str = "auto") -> None:
        super().__init__()
        stacked = nn.Linear(linears[0].in_features, sum(layer.out_features for layer in linears))
        with torch.no_grad():
            stacked.weight.copy_(torch.cat([layer.weight.detach().float().cpu() for layer in linears]))
            stacked.bias.copy_(
                torch.cat(
                    [
                        layer.bias.detach().float().cpu()
                        if layer.bias is not None
                        else torch.zeros(layer.out_features)
                        for layer in linears
                    ]
                )
            )
        self.layer = RowInt8Linear(stacked, kernel=kernel)
        self.sizes = [layer.out_features for layer in linears]
        self._last: tuple[torch.Tensor, list[torch.Tensor | None]] | None = None

    def output(self, x: torch.Tensor, index: int) -> torch.Tensor:
        last = self._last  # read once: another thread may replace it
        if last is None or last[0] is not x or last[1][index] is None:
            last = (x, list(self.layer(x).split(self.sizes, dim=-1)))
            self._last = last
        out = last[1][index]
        assert out is not None
        last[1][index] = None  # handed out: nothing is kept once every part has its slice
        if self._last is last and all(part is None for part in last[1]):
            self._last = None
        return out


class _Part(nn.Module):
    """One layer of a ``FusedRowInt8`` (registered on the first part only, so its weights are stored once)."""

    def __init__(self, fused: FusedRowInt8, index: int) -> None:
        super().__init__()
        if index == 0:
            self.fused = fused
        else:
            object.__setattr__(self, "_fused", fused)  # not a submodule: the first part owns it
        self.index, self.in_features, self.out_features = index, fused.layer.in_features, fused.sizes[index]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = self.fused if self.index == 0 else self.__dict__["_fused"]
        return fused.output(x, self.index)


FUSED_SIBLINGS = (("query", "key", "value"), ("q", "k", "v"))  # BERT-style and MPNet-style attention


def _after_activation(name: str) -> bool:
    """Whether a BERT-style encoder's layer ``name`` reads the feed-forward block's activation (GELU: almost
    all of it positive), whose rows keep their resolution only with a zero point."""
    return name.endswith("output.dense") and ".attention." not in f".{name}"


def quantize_rows_int8(model: M, *, kernel: str = "auto") -> M:
    """A copy of ``model`` (on CPU) with every ``nn.Linear`` as a ``RowInt8Linear``; an attention block's
    query, key and value as one ``FusedRowInt8``. ``kernel``: see ``matmul_kernel``."""
    kernel = matmul_kernel(kernel)
    out = copy.deepcopy(model).cpu()
    for parent_name, parent in list(out.named_modules()):
        children = dict(parent.named_children())
        for names in FUSED_SIBLINGS:
            layers = [children.get(name) for name in names]
            if all(isinstance(layer, nn.Linear) for layer in layers) and (
                len({layer.in_features for layer in layers}) == 1  # type: ignore[union-attr]
            ):
                fused = FusedRowInt8(layers, kernel=kernel)  # type: ignore[arg-type]
                for index, name in enumerate(names):
                    setattr(parent, name, _Part(fused, index))
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                full = f"{parent_name}.{name}" if parent_name else name
                layer = RowInt8Linear(child, zero_point=_after_activation(full), kernel=kernel)
                setattr(parent, name, layer)
    return out
