"""Serving: predictions, the LRU predictor cache, the micro-batcher and the int8 quantisation gate."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from core.ml.errors import MLError
from core.ml.predictions import Prediction
from core.ml.serving import MicroBatcher, PredictorCache, load_predictor, quantization_gate


def test_prediction_has_label_probabilities_and_version(predictor, test_rows):
    texts = [t for t, _ in test_rows[:12]]
    predictions = predictor.predict(texts)
    assert len(predictions) == 12
    for p in predictions:
        assert p.version == "v7"
        assert set(p.probabilities) == set(predictor.labels)
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert p.label == max(p.probabilities, key=p.probabilities.__getitem__)
    # order is the caller's, whatever the internal length-sorted batching did
    assert [p.label for p in predictor.predict(texts[::-1])] == [p.label for p in predictions][::-1]
    assert predictor.predict([]) == []
    with pytest.raises(MLError):
        predictor.predict("a single string")


def test_quantized_predictor_agrees_with_float(lora_artifact, runtime, predictor, test_rows):
    quantized = load_predictor(directory=lora_artifact, version="v7", runtime=runtime, quantized=True)
    texts = [t for t, _ in test_rows]
    assert quantized.quantized and quantized.device == "cpu"
    assert quantized.traced is not None  # the int8 encoder is traced (and checked against eager) as float is
    same = sum(
        a.label == b.label for a, b in zip(quantized.predict(texts), predictor.predict(texts), strict=True)
    )
    assert same >= 0.95 * len(texts)
    # int8 answers do not depend on the company a text keeps (micro-batched requests, files)
    alone = [quantized.predict([text])[0].probabilities for text in texts[:12]]
    together = [p.probabilities for p in quantized.predict(texts[:12][::-1])][::-1]
    assert alone == together


class _FakePredictor:
    def __init__(self, name: str) -> None:
        self.name = name


def test_cache_evicts_least_recently_used(runtime, tmp_path):
    loads: list[str] = []

    def loader(*, directory, version, runtime, quantized):
        loads.append(version)
        return _FakePredictor(version)

    cache = PredictorCache(max_size=2, loader=loader)
    get = lambda v: cache.get(version=v, directory=tmp_path, runtime=runtime)  # noqa: E731
    a = get("a")
    get("b")
    assert get("a") is a  # hit, and "a" becomes most recent
    get("c")  # evicts "b", the least recently used
    assert cache.keys() == [("a", False), ("c", False)]
    get("b")  # reloaded; evicts "a"
    assert loads == ["a", "b", "c", "b"]
    assert cache.keys() == [("c", False), ("b", False)]
    cache.evict("c")
    assert cache.keys() == [("b", False)]


def test_cache_loads_a_version_once_under_concurrency(runtime, tmp_path):
    loads: list[str] = []
    gate = threading.Event()

    def loader(*, directory, version, runtime, quantized):
        gate.wait(1.0)
        loads.append(version)
        return _FakePredictor(version)

    cache = PredictorCache(max_size=4, loader=loader)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(cache.get, version="v", directory=tmp_path, runtime=runtime) for _ in range(8)]
        gate.set()
        results = [f.result() for f in futures]
    assert loads == ["v"]
    assert all(r is results[0] for r in results)


def test_cache_batcher_follows_the_loaded_predictor(runtime, tmp_path):
    """One batcher per loaded version; evicting the version closes it, reloading makes a new one."""

    def loader(*, directory, version, runtime, quantized):
        return _RecordingPredictor()

    cache = PredictorCache(max_size=1, loader=loader)
    batcher = lambda v: cache.batcher(version=v, directory=tmp_path, runtime=runtime)  # noqa: E731
    first = batcher("a")
    assert batcher("a") is first
    assert [p.label for p in first.predict(["x", "y"])] == ["x", "y"]
    batcher("b")  # evicts "a": its batcher is closed
    with pytest.raises(MLError, match="closed"):
        first.predict(["x"])
    again = batcher("a")
    assert again is not first and again.predict(["z"])[0].label == "z"
    cache.evict("a")
    with pytest.raises(MLError, match="closed"):
        again.predict(["x"])


class _RecordingPredictor:
    """Echoes each text as its label and records the batch sizes it was called with."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def predict(self, texts):
        self.batch_sizes.append(len(texts))
        return [Prediction(t, {t: 1.0}, "v") for t in texts]


def test_microbatcher_returns_each_caller_its_own_results():
    inner = _RecordingPredictor()
    start = threading.Barrier(16)

    def call(i: int) -> list[str]:
        start.wait()
        return [p.label for p in batcher.predict([f"{i}-a", f"{i}-b"])]

    with MicroBatcher(inner, max_batch=64, max_wait_ms=50) as batcher, ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    assert results == [[f"{i}-a", f"{i}-b"] for i in range(16)]
    assert sum(inner.batch_sizes) == 32
    assert len(inner.batch_sizes) < 16  # requests were actually merged
    assert batcher.batches_run == len(inner.batch_sizes)


def test_microbatcher_close_never_strands_a_caller(monkeypatch):
    """A caller that passed the closed-check while close() runs is still answered (or refused), never lost.

    Its queue put is slowed down so that close() happens in between: a request queued behind the stop
    sentinel would wait forever.
    """
    import queue
    import types

    import core.ml.batching as batching
    from core.ml.errors import BatcherClosed

    entered = threading.Event()

    class SlowQueue(queue.Queue):
        def put(self, item, *args, **kwargs):
            if item is not None:
                entered.set()
                time.sleep(0.3)
            super().put(item, *args, **kwargs)

    monkeypatch.setattr(batching, "queue", types.SimpleNamespace(Queue=SlowQueue, Empty=queue.Empty))
    inner = _RecordingPredictor()
    batcher = MicroBatcher(inner, max_batch=4, max_wait_ms=1)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(batcher.predict, ["t"], 5)
        assert entered.wait(5)
        batcher.close()  # while the caller is inside put()
        assert [p.label for p in pending.result(timeout=10)] == ["t"]  # a stranded request times out instead
    with pytest.raises(BatcherClosed):
        batcher.predict(["late"])


def test_microbatcher_with_a_real_predictor_and_errors(predictor, test_rows):
    texts = [t for t, _ in test_rows[:8]]
    direct = predictor.predict(texts)
    with MicroBatcher(predictor, max_batch=8, max_wait_ms=20) as batcher, ThreadPoolExecutor(8) as pool:
        merged = list(pool.map(lambda t: batcher.predict([t])[0], texts))
    assert [p.label for p in merged] == [p.label for p in direct]
    for a, b in zip(merged, direct, strict=True):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)

    class Broken:
        def predict(self, texts):
            raise MLError("boom")

    with MicroBatcher(Broken(), max_wait_ms=1) as batcher, pytest.raises(MLError, match="boom"):
        batcher.predict(["x"])
    with pytest.raises(MLError, match="closed"):
        batcher.predict(["x"])


def test_the_gate_lets_exactly_half_a_point_through():
    from core.ml.serving import int8_within

    assert 0.805 - 0.8 > 0.005  # float arithmetic: one row of 200 "exceeds" half a point
    assert int8_within(0.805, 0.8, 0.005)  # one row of 200 is half a point: within the rule
    assert not int8_within(0.805, 0.795, 0.005)  # two rows are not
    assert int8_within(0.7, 0.75, 0.005) and not int8_within(0.7, 0.7, -0.001)


def test_quantization_gate_follows_the_half_point_rule(lora_artifact, runtime, test_rows):
    report = quantization_gate(directory=lora_artifact, rows=test_rows, runtime=runtime)
    assert report["n"] == 80 and "int8" in report["method"]
    assert 0.0 <= report["quantized_accuracy"] <= 1.0 and 0.0 <= report["float_accuracy"] <= 1.0
    drop = report["float_accuracy"] - report["quantized_accuracy"]
    assert report["use_quantized"] == (drop <= 0.005 + 1e-9)
    strict = quantization_gate(directory=lora_artifact, rows=test_rows, runtime=runtime, tolerance=-0.5)
    assert strict["use_quantized"] is False  # would need int8 to beat float by 50 points
    lenient = quantization_gate(directory=lora_artifact, rows=test_rows[:16], runtime=runtime, tolerance=1.0)
    assert lenient["use_quantized"] is True


def test_traced_predictor_matches_the_eager_module(lora_artifact, runtime, predictor, test_rows):
    eager = load_predictor(directory=lora_artifact, version="v7", runtime=runtime, trace=False)
    assert predictor.traced is not None and eager.traced is None
    texts = [t for t, _ in test_rows]  # mixed lengths: padded batches and a final short batch
    assert torch.allclose(predictor.predict_proba(texts), eager.predict_proba(texts), atol=1e-5)
    assert torch.allclose(predictor.predict_proba(texts[:1]), eager.predict_proba(texts[:1]), atol=1e-5)


def test_microbatcher_embeds_concurrent_callers_in_shared_passes(predictor, test_rows):
    """Callers asking for vectors (a chat message: classified from them, then searched for) share encoder
    passes as predictions do; each gets its own rows, as alone up to float noise, beside predict callers."""
    texts = [t for t, _ in test_rows[:12]]
    alone = [predictor.embed([t])[0] for t in texts]
    start = threading.Barrier(12)

    def call(i: int):
        start.wait()
        if i % 3 == 2:  # some callers want predictions: answered from a pass of their own
            return batcher.predict([texts[i]])[0]
        return batcher.embed([texts[i]])

    with MicroBatcher(predictor, max_batch=64, max_wait_ms=100) as batcher, ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, range(12)))
        passes = batcher.batches_run
    for i, result in enumerate(results):
        if i % 3 == 2:
            assert result.label == predictor.predict([texts[i]])[0].label
        else:
            assert result.shape == (1, alone[i].shape[0])
            assert torch.allclose(result[0], alone[i], atol=1e-5)
    assert passes < 12  # merged: fewer passes than callers

    class NoEncoder:
        def predict(self, texts):
            return []

    with MicroBatcher(NoEncoder(), max_wait_ms=1) as batcher, pytest.raises(MLError, match="no encoder"):
        batcher.embed(["x"])
