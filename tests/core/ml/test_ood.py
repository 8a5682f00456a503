"""The out-of-scope model (core.ml.ood): fitted with a classifier, saved and reloaded with its artifact, and
an off-topic question scored as less in scope than a training-like one. Versions saved without one still
load."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from core.ml.artifact import MANIFEST, file_hashes, read_manifest, write_manifest
from core.ml.errors import MLError
from core.ml.evaluate import evaluate_classifier
from core.ml.ood import HANDOFF_QUANTILE, MEDIAN_IN_SCOPE, NEIGHBOURS, WEIGHTS_FILE, fit_out_of_scope

OFF_TOPIC = [
    "What is the boiling point of tungsten in kelvin?",
    "Recommend a good lasagne recipe for six people",
    "Who won the football world cup in 1998?",
]


def test_nearness_is_the_mean_cosine_to_the_nearest_training_rows_and_the_map_is_calibrated():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(50, 8))
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    probe = rng.normal(size=(7, 8))
    probe /= np.linalg.norm(probe, axis=1, keepdims=True)
    proba = rng.dirichlet(np.ones(3), size=7)
    held, top = (probe, proba), (probe, proba.max(1))
    ood = fit_out_of_scope(train=bank, held_out=held)
    stored = bank.astype(np.float16).astype(np.float32)
    expected = np.sort(probe @ stored.T, axis=1)[:, -NEIGHBOURS:].mean(1)
    assert np.allclose(ood.nearness(probe), expected, atol=1e-5)
    scores = ood.in_scope(*top)  # the held-out rows' own map: 0.5 at the low quantile, 0.9 at the median
    assert np.median(scores) == pytest.approx(MEDIAN_IN_SCOPE, abs=1e-6)
    assert np.quantile(ood.score(*top), HANDOFF_QUANTILE) == pytest.approx(ood.calibration.centre)
    # without held-out rows, each training row is scored against the others (itself left out)
    alone = fit_out_of_scope(train=bank, held_out=None, train_proba=np.full((50, 3), 1 / 3))
    own = np.sort(stored @ stored.T, axis=1)[:, -NEIGHBOURS - 1 : -1].mean(1)
    assert alone.calibration.near_mean == pytest.approx(float(own.mean()), abs=1e-5)
    with pytest.raises(MLError, match="at least two"):
        fit_out_of_scope(train=bank[:1], held_out=held)


def test_a_trained_classifier_scores_off_topic_questions_as_out_of_scope(head_model, train_rows):
    assert head_model.ood is not None
    known = [text for text, _ in train_rows[::20]]
    predictions = head_model.predict(known + OFF_TOPIC)
    scopes = [p.in_scope for p in predictions]
    assert all(s is not None and 0.0 <= s <= 1.0 for s in scopes)
    inside, outside = scopes[: len(known)], scopes[len(known) :]
    assert max(outside) < min(inside), (inside, outside)
    assert max(outside) < 0.5 < min(inside)  # the bot's default threshold hands them off


def test_the_ood_model_is_saved_and_reloaded_with_the_artifact(head_model, head_artifact, runtime):
    from core.ml.serving import load_predictor

    manifest = read_manifest(head_artifact)
    assert manifest["ood"]["method"] == "knn-cosine+top-probability"
    assert WEIGHTS_FILE in manifest["files"]
    texts = ["I still have not received my new card", *OFF_TOPIC]
    predictor = load_predictor(directory=head_artifact, version="v1", runtime=runtime, trace=False)
    assert predictor.ood is not None
    assert np.array_equal(predictor.ood.bank, head_model.ood.bank)
    assert predictor.ood.calibration == head_model.ood.calibration
    loaded = [p.in_scope for p in predictor.predict(texts)]
    in_memory = [p.in_scope for p in head_model.predict(texts)]
    assert loaded == pytest.approx(in_memory, abs=1e-5)


def test_a_version_saved_without_an_ood_model_answers_as_before(head_artifact, runtime, tmp_path):
    from core.ml.serving import load_predictor

    old = tmp_path / "old"
    shutil.copytree(head_artifact, old)
    (old / WEIGHTS_FILE).unlink()
    manifest = json.loads((old / MANIFEST).read_text())
    del manifest["ood"]  # as versions saved before the out-of-scope model have it
    manifest["files"] = {k: v for k, v in file_hashes(old).items() if k != MANIFEST}
    write_manifest(manifest, old)
    texts = ["I still have not received my new card", OFF_TOPIC[0]]
    before = load_predictor(directory=head_artifact, version="v", runtime=runtime, trace=False).predict(texts)
    after = load_predictor(directory=old, version="v", runtime=runtime, trace=False).predict(texts)
    assert [p.in_scope for p in after] == [None, None]
    assert [p.probabilities for p in after] == [p.probabilities for p in before]
    rows = [("I still have not received my new card", "card_arrival"), (OFF_TOPIC[1], "card_arrival")]
    old_loaded = load_predictor(directory=old, version="v", runtime=runtime, trace=False)
    assert evaluate_classifier(model_or_predictor=old_loaded, rows=rows).in_scope_coverage == []


def test_held_out_metrics_carry_the_in_scope_coverage_curve(head_model, test_rows):
    metrics = evaluate_classifier(model_or_predictor=head_model, rows=test_rows)
    assert len(metrics.in_scope_coverage) == len(metrics.coverage) > 0
    predictions = head_model.predict([t for t, _ in test_rows])
    confidences = [min(p.probabilities[p.label], p.in_scope) for p in predictions]
    assert [p.confidence for p in predictions] == confidences
    half = next(point for point in metrics.in_scope_coverage if point["threshold"] == 0.5)
    assert half["answered"] == pytest.approx(sum(c >= 0.5 for c in confidences) / len(confidences))


def test_ood_false_trains_without_it(runtime, train_rows):
    from core.ml.train import TrainConfig, train_classifier

    model = train_classifier(
        config=TrainConfig(method="head", head_c=10.0, ood=False),
        train=train_rows[::2],
        validation=[],
        runtime=runtime,
    )
    assert model.ood is None and model.predict(["a card question"])[0].in_scope is None
