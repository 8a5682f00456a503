"""Temperature scaling: one scalar that makes a classifier's confidence mean what it says.

A fine-tuned model (and a blend of two models' probabilities) tends to be over- or under-confident; dividing
the log-probabilities by a temperature ``T`` fitted on held-out rows (the one that minimises their negative
log-likelihood) fixes the average without changing any argmax, so accuracy is unchanged. The temperature
is fitted after everything else (fine-tune, lexical blend) on the validation rows, stored in the version's
manifest (``calibration``) and applied to the final probabilities in training and in serving. ``T = 1`` is
the identity. No torch import at module level: the fit is numpy, :func:`apply_temperature` takes whatever
array type it is given (numpy or torch).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.ml.errors import MLError

# Searched on a log scale: 0.05 (sharpen 20x) to 20 (flatten 20x); refined around the best point.
T_MIN, T_MAX = 0.05, 20.0
GRID_POINTS = 121
PROBABILITY_FLOOR = 1e-12


def _nll(log_probs: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``targets`` under softmax(log_probs / temperature)."""
    scaled = log_probs / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    return float((log_norm - scaled[np.arange(len(targets)), targets]).mean())


def fit_temperature(probs: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that minimises the NLL of ``targets`` (N,) under ``probs`` (N, n_labels) rescaled.

    A grid on a log scale, then a finer grid around its best point (the NLL is smooth and unimodal in
    log T for these shapes); rounded to 4 decimals so the manifest reads cleanly."""
    probs, targets = np.asarray(probs, dtype=np.float64), np.asarray(targets, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(targets) or not len(targets):
        raise MLError("Calibration needs (N, n_labels) probabilities and N targets, N >= 1.")
    log_probs = np.log(np.clip(probs, PROBABILITY_FLOOR, 1.0))
    grid = np.geomspace(T_MIN, T_MAX, GRID_POINTS)
    best = min(grid, key=lambda t: _nll(log_probs, targets, float(t)))
    step = (T_MAX / T_MIN) ** (1 / (GRID_POINTS - 1))
    fine = np.geomspace(best / step, best * step, 41)
    best = min(fine, key=lambda t: _nll(log_probs, targets, float(t)))
    return round(float(best), 4)


def apply_temperature(probs: Any, temperature: float) -> Any:
    """softmax(log(probs) / temperature) row-wise; ``probs`` itself when ``temperature`` is 1.

    Works on numpy arrays and torch tensors (same type, dtype and device back)."""
    if temperature == 1.0 or not len(probs):
        return probs
    if temperature <= 0:
        raise MLError("The temperature must be positive.")
    if isinstance(probs, np.ndarray):
        scaled = np.log(np.clip(probs, PROBABILITY_FLOOR, 1.0)) / temperature
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        exp = np.exp(scaled)
        return exp / exp.sum(axis=1, keepdims=True)
    return (probs.clamp_min(PROBABILITY_FLOOR).log() / temperature).softmax(dim=-1)
