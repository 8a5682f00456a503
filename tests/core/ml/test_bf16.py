"""bf16 batch work (``core.ml.bf16``): the encoder copy, its gate, and the once-per-process timing that
decides whether bf16 pays on this machine."""

from __future__ import annotations

import torch

from core.ml import bf16 as bf16_module
from core.ml.predictor import bf16_copy
from core.ml.serving import quantization_gate


def test_a_bf16_copy_agrees_with_float_and_leaves_the_float_model_alone(predictor, test_rows):
    texts = [t for t, _ in test_rows[:12]]
    float_before = predictor.predict_proba(texts)
    copy = bf16_copy(predictor)
    assert copy.bf16 and not copy.quantized and copy.device == "cpu" and copy.traced is None
    assert {p.dtype for p in copy.model.encoder.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in copy.model.head.parameters()} == {torch.float32}  # reads float32 embeddings
    assert {p.dtype for p in predictor.model.parameters()} == {torch.float32}  # the float model is untouched
    assert copy.encoder_key.endswith(":bf16@cpu") and copy.encoder_key != predictor.encoder_key
    assert copy.encoder_key.rsplit(":", 1)[0] == predictor.encoder_key.rsplit(":", 1)[0]
    vectors, reference = copy.embed(texts), predictor.embed(texts)
    assert vectors.dtype == torch.float32
    assert torch.nn.functional.cosine_similarity(vectors, reference).min() > 0.999
    assert torch.allclose(copy.predict_proba(texts), float_before, atol=0.05)
    assert torch.equal(predictor.predict_proba(texts), float_before)
    # batched as float is (padded to each batch's longest), not a batch per token length as int8 is: AMX
    # pays on whole batches
    batches = []
    real = copy._encode
    copy._encode = lambda ids, mask: batches.append(mask) or real(ids, mask)  # type: ignore[method-assign]
    copy.embed(texts)
    assert len(batches) == 1 and not bool(batches[0].all())


def test_bf16_pays_only_where_it_is_clearly_the_fastest_product_timed_once(monkeypatch):
    timings: list[float] = []
    calls: list[int] = []

    def fake_best_of(call, repeats: int = 3) -> float:
        calls.append(1)
        return timings[len(calls) - 1]

    monkeypatch.setattr(bf16_module, "_best_of", fake_best_of)
    monkeypatch.setattr(bf16_module, "matmul_kernel", lambda kernel: "int")
    monkeypatch.setattr(bf16_module, "_pays", {})
    timings[:] = [1.0, 4.0, 1.4]  # bf16, float32, int8: bf16 takes 0.71 of int8's time: not clearly faster
    assert bf16_module.bf16_pays() is False
    assert bf16_module.bf16_pays() is False and len(calls) == 3  # known for this thread count: not timed
    monkeypatch.setattr(bf16_module, "_pays", {})
    calls.clear()
    timings[:] = [1.0, 12.0, 2.9]  # as measured on an AMX Xeon
    assert bf16_module.bf16_pays() is True and len(calls) == 3
    monkeypatch.setattr(bf16_module, "_pays", {})
    monkeypatch.setattr(bf16_module, "matmul_kernel", lambda kernel: "float")  # no fast int8: two kernels
    calls.clear()
    timings[:] = [30.0, 0.6]  # an AVX2-only CPU: bf16 is a reference loop
    assert bf16_module.bf16_pays() is False and len(calls) == 2


def test_the_gate_measures_bf16_where_it_pays_and_says_so_where_it_does_not(
    lora_artifact, runtime, test_rows, monkeypatch
):
    rows = test_rows[:20]
    monkeypatch.setattr(bf16_module, "bf16_pays", lambda: False)
    report = quantization_gate(directory=lora_artifact, rows=rows, runtime=runtime)
    assert report["use_bf16"] is False and "not measured" in report["bf16"]
    assert "bf16_accuracy" not in report
    monkeypatch.setattr(bf16_module, "bf16_pays", lambda: True)
    report = quantization_gate(directory=lora_artifact, rows=rows, runtime=runtime)
    assert 0.0 <= report["bf16_accuracy"] <= 1.0 and report["bf16_agreement"] >= 0.85
    drop = report["float_accuracy"] - report["bf16_accuracy"]
    assert report["use_bf16"] == (drop <= 0.005 + 1e-9)
    strict = quantization_gate(directory=lora_artifact, rows=rows, runtime=runtime, tolerance=-0.5)
    assert strict["use_bf16"] is False  # would need bf16 to beat float by 50 points
