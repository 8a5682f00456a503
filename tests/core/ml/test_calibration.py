"""Temperature scaling (``core.ml.calibration``) and a calibrated classifier: the temperature is fitted on the
validation rows, changes confidence but no answer, is stored with the version and applied again on reload."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from ml_helpers import small_split

from core.ml.artifact import load_temperature, read_manifest, save_artifact
from core.ml.calibration import apply_temperature, fit_temperature
from core.ml.errors import ArtifactError, MLError
from core.ml.evaluate import expected_calibration_error
from core.ml.predictor import int8_copy
from core.ml.serving import load_predictor
from core.ml.train import TrainConfig, train_classifier


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def ece_of(probs: torch.Tensor, gold: list[int]) -> float:
    confidence, predicted = probs.max(dim=-1)
    return expected_calibration_error(
        confidence.tolist(), [p == g for p, g in zip(predicted.tolist(), gold, strict=True)]
    )


def test_fit_recovers_the_temperature_that_generated_the_labels():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 3)) * 3
    targets = np.array([rng.choice(3, p=row) for row in softmax(logits / 2.5)])
    assert 2.2 < fit_temperature(softmax(logits), targets) < 2.8  # over-confident by 2.5x: flatten
    sharp = np.array([rng.choice(3, p=row) for row in softmax(logits * 2)])
    assert 0.4 < fit_temperature(softmax(logits), sharp) < 0.6  # under-confident: sharpen


def test_apply_keeps_every_answer_and_sums_to_one():
    probs = softmax(np.random.default_rng(1).normal(size=(50, 4)))
    for temperature in (0.3, 2.0):
        scaled = apply_temperature(probs, temperature)
        assert np.allclose(scaled.sum(axis=1), 1.0) and (scaled.argmax(1) == probs.argmax(1)).all()
        tensor = apply_temperature(torch.tensor(probs, dtype=torch.float32), temperature)
        assert tensor.dtype == torch.float32 and np.allclose(tensor.numpy(), scaled, atol=1e-5)
    assert apply_temperature(probs, 1.0) is probs
    with pytest.raises(MLError, match="positive"):
        apply_temperature(probs, 0.0)
    with pytest.raises(MLError, match="N targets"):
        fit_temperature(probs, np.zeros(3, dtype=int))


def test_calibrate_must_be_a_boolean():
    with pytest.raises(MLError, match="calibrate must be true or false"):
        TrainConfig(method="head", calibrate="yes").validate()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def calibrated(runtime, train_rows, test_rows):
    """A head + TF-IDF blend with a temperature fitted on 3 validation rows per label (a few seconds)."""
    config = TrainConfig(method="head", lexical=True, calibrate=True)
    return train_classifier(
        config=config, train=train_rows, validation=small_split(test_rows, 3), runtime=runtime
    )


def test_a_calibrated_model_changes_confidence_not_answers(calibrated, test_rows):
    texts = [t for t, _ in test_rows]
    assert calibrated.temperature > 0 and calibrated.temperature != 1.0
    probs = calibrated.predict_proba(texts)
    raw = dataclasses.replace(calibrated, temperature=1.0).predict_proba(texts)
    assert torch.allclose(probs.sum(dim=-1), torch.ones(len(texts)), atol=1e-5)
    assert torch.equal(probs.argmax(dim=-1), raw.argmax(dim=-1))
    assert not torch.allclose(probs, raw, atol=1e-3)


def test_calibration_does_not_worsen_ece_on_a_small_slice(calibrated, test_rows):
    gold = [calibrated.labels.index(label) for _, label in test_rows]
    texts = [t for t, _ in test_rows]
    raw = dataclasses.replace(calibrated, temperature=1.0)
    assert ece_of(calibrated.predict_proba(texts), gold) <= ece_of(raw.predict_proba(texts), gold)


def test_the_temperature_is_saved_and_reloaded(calibrated, tmp_path, runtime, test_rows):
    texts = [t for t, _ in test_rows]
    save_artifact(model=calibrated, directory=tmp_path / "v1", extra_manifest={})
    assert read_manifest(tmp_path / "v1")["calibration"] == {"temperature": calibrated.temperature}
    predictor = load_predictor(directory=tmp_path / "v1", version="v1", runtime=runtime)
    assert predictor.temperature == calibrated.temperature
    assert torch.allclose(predictor.predict_proba(texts), calibrated.predict_proba(texts), atol=1e-5)
    assert int8_copy(predictor).temperature == calibrated.temperature
    # a version without one (or saved before calibration existed) serves uncalibrated; a bad one is refused
    copy = tmp_path / "v2"
    shutil.copytree(tmp_path / "v1", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["calibration"] = {"temperature": -1}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="temperature must be positive"):
        load_predictor(directory=copy, version="v2", runtime=runtime)
    assert load_temperature({"calibration": None}) == load_temperature({}) == 1.0


def test_an_uncalibrated_version_has_no_temperature(head_artifact, runtime):
    assert read_manifest(head_artifact)["calibration"] is None
    assert load_predictor(directory=head_artifact, version="v", runtime=runtime).temperature == 1.0
