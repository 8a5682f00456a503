"""Fitting a linear (multinomial logistic) head on frozen sentence embeddings.

This is the "model at once" path: one embedding pass over the data, then a convex full-batch L-BFGS fit that
takes well under a second for hundreds of rows. It also warm-starts the head before LoRA/full fine-tuning
(linear probe then fine-tune), which keeps a random head from wrecking the pretrained features in the first
steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Inverse L2 strengths tried when a validation set can choose (sklearn-style C: larger = weaker penalty).
C_GRID = (1.0, 10.0, 100.0)
DEFAULT_C = 10.0


def class_weights(targets: torch.Tensor, n_labels: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 over present classes: n / (k * n_c)."""
    counts = torch.bincount(targets, minlength=n_labels).float()
    present = counts > 0
    weights = torch.zeros(n_labels)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights


def fit_linear_head(
    *,
    features: torch.Tensor,  # (N, H), unit length
    targets: torch.Tensor,  # (N,) int64
    n_labels: int,
    c: float,
    weights: torch.Tensor | None,
    max_iter: int = 200,
) -> nn.Linear:
    """Minimise weighted mean cross-entropy + ||W||^2 / (2 C N) with L-BFGS."""
    head = nn.Linear(features.shape[1], n_labels)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    penalty = 1.0 / (2.0 * c * features.shape[0])
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = loss_fn(head(features), targets) + penalty * head.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return head


def head_accuracy(head: nn.Linear, features: torch.Tensor, targets: torch.Tensor) -> float:
    with torch.no_grad():
        return float((head(features).argmax(dim=-1) == targets).float().mean())


def select_and_fit_head(
    *,
    train: tuple[torch.Tensor, torch.Tensor],
    validation: tuple[torch.Tensor, torch.Tensor] | None,
    n_labels: int,
    c: float | None,
    weights: torch.Tensor | None,
    grid: Sequence[float] = C_GRID,
) -> tuple[nn.Linear, float]:
    """Fit with ``c``, or pick C from ``grid`` by validation accuracy (ties: smaller C)."""
    if c is not None or validation is None or len(validation[1]) == 0:
        chosen = DEFAULT_C if c is None else c
        return fit_linear_head(
            features=train[0], targets=train[1], n_labels=n_labels, c=chosen, weights=weights
        ), chosen
    best: tuple[float, nn.Linear, float] | None = None
    for candidate in grid:
        head = fit_linear_head(
            features=train[0], targets=train[1], n_labels=n_labels, c=candidate, weights=weights
        )
        score = head_accuracy(head, *validation)
        if best is None or score > best[0]:
            best = (score, head, candidate)
    assert best is not None
    return best[1], best[2]
