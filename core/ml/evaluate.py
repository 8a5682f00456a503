"""Held-out evaluation: accuracy, macro-F1, per-class precision/recall/F1, confusion matrix, calibration
(ECE) and the coverage curve (at each confidence threshold, the share of rows a threshold rule would answer
and the share it would answer wrongly: what a product shows its tenant to choose an operating point).

Pure functions over labels and confidences (:func:`compute_metrics`) plus :func:`evaluate_classifier`, which
runs any object with ``predict(texts)`` (a trained model or a loaded predictor) over labelled rows. No torch
import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from core.ml.errors import MLError, UnknownLabelError
from core.ml.predictions import SupportsPredict

ECE_BINS = 15
# Thresholds of the coverage curve: 0.05 to 0.95 in steps of 0.05.
COVERAGE_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


@dataclass(frozen=True)
class Metrics:
    """Classification metrics. ``confusion[i][j]`` counts gold ``labels[i]`` predicted as ``labels[j]``."""

    accuracy: float
    macro_f1: float
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    labels: list[str]
    ece: float
    n: int
    # [{"threshold", "answered", "wrong"}]: shares of all ``n`` rows whose top confidence is >= threshold
    # (answered) and of those answered with the wrong label (wrong), one entry per COVERAGE_THRESHOLDS.
    coverage: list[dict[str, float]] = field(default_factory=list)
    # The same curve over ``Prediction.confidence`` (the top probability capped by ``in_scope``), for a
    # version with an out-of-scope model (``core.ml.ood``); empty without one.
    in_scope_coverage: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _confusion(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> list[list[int]]:
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted, strict=True):
        matrix[index[g]][index[p]] += 1
    return matrix


def _per_class(matrix: list[list[int]], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    out = {}
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        support = sum(matrix[i])
        predicted = sum(row[i] for row in matrix)
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": float(support)}
    return out


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS
) -> float:
    """ECE with equal-width confidence bins: sum over bins of |bin| / n * |accuracy - mean confidence|."""
    n = len(confidences)
    totals = [[0, 0.0, 0.0] for _ in range(bins)]  # count, sum confidence, sum correct
    for conf, ok in zip(confidences, correct, strict=True):
        b = min(bins - 1, max(0, int(conf * bins - 1e-12)))  # (k/bins, (k+1)/bins]
        totals[b][0] += 1
        totals[b][1] += conf
        totals[b][2] += float(ok)
    return sum(abs(s_ok - s_conf) / n for count, s_conf, s_ok in totals if count)


def coverage_curve(
    confidences: Sequence[float],
    correct: Sequence[bool],
    thresholds: Sequence[float] = COVERAGE_THRESHOLDS,
) -> list[dict[str, float]]:
    """At each threshold, the share of rows answered (top confidence >= threshold) and the share answered
    wrongly, both over all rows: the trade-off of a "answer when sure enough, else hand off" rule."""
    n = len(confidences)
    if n == 0:
        return []
    conf = np.asarray(confidences, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    curve = []
    for threshold in thresholds:
        answered = conf >= threshold
        curve.append(
            {
                "threshold": float(threshold),
                "answered": float(answered.sum() / n),
                "wrong": float((answered & ~ok).sum() / n),
            }
        )
    return curve


def compute_metrics(
    *, gold: Sequence[str], predicted: Sequence[str], confidences: Sequence[float], labels: Sequence[str]
) -> Metrics:
    """Metrics over the model's ``labels``; macro-F1 averages labels seen in gold or predictions."""
    if not gold:
        raise MLError("Cannot evaluate on zero rows.")
    unknown = sorted(set(gold) - set(labels))
    if unknown:
        raise UnknownLabelError(f"Labels not known to the model: {', '.join(unknown[:10])}.")
    matrix = _confusion(gold, predicted, labels)
    per_class = _per_class(matrix, labels)
    seen = set(gold) | set(predicted)
    f1s = [per_class[label]["f1"] for label in labels if label in seen]
    correct = [g == p for g, p in zip(gold, predicted, strict=True)]
    return Metrics(
        accuracy=sum(correct) / len(gold),
        macro_f1=sum(f1s) / len(f1s),
        per_class=per_class,
        confusion=matrix,
        labels=list(labels),
        ece=expected_calibration_error(confidences, correct),
        n=len(gold),
        coverage=coverage_curve(confidences, correct),
    )


def evaluate_classifier(*, model_or_predictor: SupportsPredict, rows: Sequence[tuple[str, str]]) -> Metrics:
    """Predict every ``(text, label)`` row and score the predictions against the labels."""
    predictions = model_or_predictor.predict([text for text, _ in rows])
    if not predictions:
        raise MLError("Cannot evaluate on zero rows.")
    labels = list(predictions[0].probabilities)
    metrics = compute_metrics(
        gold=[label for _, label in rows],
        predicted=[p.label for p in predictions],
        confidences=[p.probabilities[p.label] for p in predictions],
        labels=labels,
    )
    if any(p.in_scope is None for p in predictions):
        return metrics
    correct = [p.label == label for p, (_, label) in zip(predictions, rows, strict=True)]
    return replace(metrics, in_scope_coverage=coverage_curve([p.confidence for p in predictions], correct))


class SupportsEmbed(Protocol):
    """Anything with ``embed(texts) -> (N, dim)`` unit-norm rows (trained or loaded embedders)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def evaluate_retrieval(
    *, embedder: SupportsEmbed, pairs: Sequence[tuple[str, str]], k: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Rank the deduplicated positives of ``pairs`` for each query: recall@k, MRR and n (queries).

    A corpus entry whose text is the query itself is skipped for that query (it would trivially rank first
    when queries double as other queries' positives).
    """
    if not pairs:
        raise MLError("Retrieval evaluation needs at least one (query, positive) pair.")
    corpus = list(dict.fromkeys(positive for _, positive in pairs))
    position = {text: i for i, text in enumerate(corpus)}
    gold = np.array([position[positive] for _, positive in pairs])
    scores = embedder.embed([q for q, _ in pairs]) @ embedder.embed(corpus).T  # (n_queries, n_corpus)
    for row, (query, positive) in enumerate(pairs):
        if query in position and query != positive:
            scores[row, position[query]] = -np.inf
    gold_scores = scores[np.arange(len(pairs)), gold][:, None]
    ranks = (scores > gold_scores).sum(axis=1) + 1  # 1-based; ties resolved in the query's favour
    metrics = {f"recall@{n}": float((ranks <= n).mean()) for n in k}
    return {**metrics, "mrr": float((1.0 / ranks).mean()), "n": float(len(pairs))}
