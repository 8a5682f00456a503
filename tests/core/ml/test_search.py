"""Hyper-parameter search: two tiny LoRA trials, the best one wins and its model is returned."""

from __future__ import annotations

import pytest
from ml_helpers import small_split

from core.ml.errors import MLError
from core.ml.search import SearchSpace, search_hyperparameters
from core.ml.train import TrainConfig


def test_search_runs_two_trials_and_picks_the_best(runtime, train_rows, test_rows):
    messages: list[str] = []
    space = SearchSpace(
        learning_rate=(1e-5, 1e-3, True), epochs=(1,), lora_r=(4, 8), lora_alpha=(8,), batch_size=(16,)
    )
    base = TrainConfig(method="lora", head_warm_start=False, seed=5)
    result = search_hyperparameters(
        base=base,
        space=space,
        train=small_split(train_rows, 6),
        validation=small_split(test_rows, 3),
        runtime=runtime,
        n_trials=2,
        time_budget_s=None,
        progress=lambda p: messages.append(p.message),
    )
    assert [t["number"] for t in result.trials] == [0, 1]
    assert all(t["state"] == "COMPLETE" and t["duration_s"] > 0 for t in result.trials)
    values = [t["value"] for t in result.trials]
    assert result.best_value == max(values)
    winner = result.trials[values.index(max(values))]["params"]
    assert result.best_config.learning_rate == pytest.approx(winner["learning_rate"])
    assert result.best_config.lora_r == winner["lora_r"]
    assert result.best_model.stats.best_val_metric == pytest.approx(result.best_value)
    assert result.best_model.predict(["my card never arrived"])[0].label in result.best_model.labels
    assert any(m.startswith("Trial 1/2") for m in messages) and any(
        m.startswith("Trial 2/2") for m in messages
    )


def test_search_needs_validation_rows(runtime, train_rows):
    with pytest.raises(MLError, match="validation"):
        search_hyperparameters(
            base=TrainConfig(),
            space=SearchSpace(),
            train=train_rows,
            validation=[],
            runtime=runtime,
            n_trials=1,
            time_budget_s=None,
        )
