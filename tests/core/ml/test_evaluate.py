"""Metrics on hand-built examples, cross-checked with scikit-learn."""

from __future__ import annotations

import random

import pytest

from core.ml.errors import UnknownLabelError
from core.ml.evaluate import compute_metrics, evaluate_classifier, expected_calibration_error
from core.ml.predictions import Prediction

GOLD = ["a", "a", "a", "b", "b", "c"]
PRED = ["a", "a", "b", "b", "c", "c"]
CONF = [0.9, 0.82, 0.62, 0.71, 0.55, 0.95]  # each in its own 1/15-wide bin


def test_hand_built_metrics():
    m = compute_metrics(gold=GOLD, predicted=PRED, confidences=CONF, labels=["a", "b", "c"])
    assert m.n == 6
    assert m.accuracy == pytest.approx(4 / 6)
    assert m.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m.per_class["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3.0})
    assert m.per_class["b"]["f1"] == pytest.approx(0.5)
    assert m.per_class["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1.0})
    assert m.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    # one row per bin: ECE = mean |correct - confidence|
    assert m.ece == pytest.approx((0.1 + 0.18 + 0.62 + 0.29 + 0.55 + 0.05) / 6)
    assert m.to_dict()["labels"] == ["a", "b", "c"]


def test_coverage_curve_counts_answered_and_wrong_over_all_rows():
    m = compute_metrics(gold=GOLD, predicted=PRED, confidences=CONF, labels=["a", "b", "c"])
    by_threshold = {point["threshold"]: point for point in m.coverage}
    assert len(m.coverage) == 19
    assert m.coverage[0]["threshold"] == 0.05 and m.coverage[-1]["threshold"] == 0.95
    # 0.6: all but 0.55 (wrong) answered -> 5/6 answered, 1 wrong (0.62); 0.8: 0.9, 0.82, 0.95, all right
    assert by_threshold[0.6] == pytest.approx({"threshold": 0.6, "answered": 5 / 6, "wrong": 1 / 6})
    assert by_threshold[0.8] == pytest.approx({"threshold": 0.8, "answered": 3 / 6, "wrong": 0.0})
    assert by_threshold[0.5] == pytest.approx({"threshold": 0.5, "answered": 1.0, "wrong": 2 / 6})
    assert by_threshold[0.95] == pytest.approx({"threshold": 0.95, "answered": 1 / 6, "wrong": 0.0})
    assert m.to_dict()["coverage"] == m.coverage


def test_ece_shares_a_bin():
    # 0.91 and 0.93 share bin 13; one right, one wrong -> |0.5 - 0.92| * 2/3; 0.5 alone -> |1 - 0.5| / 3
    ece = expected_calibration_error([0.91, 0.93, 0.5], [True, False, True])
    assert ece == pytest.approx(abs(0.5 - 0.92) * 2 / 3 + 0.5 / 3)
    assert expected_calibration_error([1.0, 1.0], [True, True]) == pytest.approx(0.0)


def test_matches_sklearn_on_random_labels():
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    rng = random.Random(3)
    labels = ["w", "x", "y", "z"]
    gold = [rng.choice(labels) for _ in range(300)]
    pred = [g if rng.random() < 0.6 else rng.choice(labels) for g in gold]
    m = compute_metrics(gold=gold, predicted=pred, confidences=[0.5] * 300, labels=labels)
    assert m.accuracy == pytest.approx(accuracy_score(gold, pred))
    assert m.macro_f1 == pytest.approx(f1_score(gold, pred, average="macro"))
    assert m.confusion == confusion_matrix(gold, pred, labels=labels).tolist()


def test_unknown_gold_label_is_reported():
    with pytest.raises(UnknownLabelError, match="zzz"):
        compute_metrics(gold=["zzz"], predicted=["a"], confidences=[0.9], labels=["a", "b"])


class _Echo:
    """A predictor that predicts the text itself as the label."""

    def predict(self, texts):
        return [
            Prediction(t, {"a": 0.7 if t == "a" else 0.3, "b": 0.3 if t == "a" else 0.7}, "v") for t in texts
        ]


def test_evaluate_classifier_uses_predictions():
    m = evaluate_classifier(model_or_predictor=_Echo(), rows=[("a", "a"), ("b", "b"), ("a", "b")])
    assert m.accuracy == pytest.approx(2 / 3)
    assert m.confusion == [[1, 0], [1, 1]]
    assert m.ece == pytest.approx(abs(2 / 3 - 0.7))
