"""Hyper-parameter search with Optuna (TPE, seeded) over a declared space, within a trial count and budget.

Each trial is one ``train_classifier`` run scored by its best validation metric (``base.metric``); the best
trial's model is kept in memory so the caller can save it without retraining. Cancellation propagates.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from core.ml.errors import MLError
from core.ml.runtime import Runtime
from core.ml.train import Progress, TrainConfig, train_classifier

if TYPE_CHECKING:
    import optuna

    from core.ml.classifier import TrainedClassifier


@dataclass(frozen=True)
class SearchSpace:
    """What a search may vary. ``learning_rate`` is (low, high, log-uniform); the rest are choices."""

    learning_rate: tuple[float, float, bool] = (1e-4, 2e-3, True)
    epochs: tuple[int, ...] = (2, 3, 4)
    lora_r: tuple[int, ...] = (4, 8, 16)
    lora_alpha: tuple[int, ...] = (8, 16, 32)
    batch_size: tuple[int, ...] = (16, 32)

    def validate(self) -> None:
        low, high, _log = self.learning_rate
        if not 0 < low <= high:
            raise MLError("Search space: learning_rate needs 0 < low <= high.")
        if not (self.epochs and self.lora_r and self.lora_alpha and self.batch_size):
            raise MLError("Search space: every choice list needs at least one value.")


@dataclass(frozen=True)
class SearchResult:
    """The best config and its validation value, every trial's record, and the best trial's trained model."""

    best_config: TrainConfig
    best_value: float
    trials: list[dict[str, Any]]
    best_model: TrainedClassifier


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    low, high, log = space.learning_rate
    return {
        "learning_rate": trial.suggest_float("learning_rate", low, high, log=log),
        "epochs": trial.suggest_categorical("epochs", list(space.epochs)),
        "lora_r": trial.suggest_categorical("lora_r", list(space.lora_r)),
        "lora_alpha": trial.suggest_categorical("lora_alpha", list(space.lora_alpha)),
        "batch_size": trial.suggest_categorical("batch_size", list(space.batch_size)),
    }


def _trial_records(study: optuna.Study) -> list[dict[str, Any]]:
    records = []
    for t in study.trials:
        duration = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        records.append(
            {
                "number": t.number,
                "params": dict(t.params),
                "value": t.value,
                "state": t.state.name,
                "duration_s": duration,
            }
        )
    return records


def _trial_progress(progress: Callable[[Progress], None] | None, number: int, n_trials: int) -> Any:
    if progress is None:
        return None
    prefix = f"Trial {number + 1}/{n_trials}"
    return lambda p: progress(replace(p, message=f"{prefix}: {p.message}" if p.message else prefix))


def search_hyperparameters(
    *,
    base: TrainConfig,
    space: SearchSpace,
    train: Sequence[tuple[str, str]],
    validation: Sequence[tuple[str, str]],
    runtime: Runtime,
    n_trials: int,
    time_budget_s: float | None,
    progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SearchResult:
    """Run up to ``n_trials`` trainings (fewer if the budget runs out) and return the best."""
    import optuna  # not at import: optuna is slow to import and only searches need it

    space.validate()
    if not validation or n_trials < 1:
        raise MLError("A search needs validation rows and at least one trial.")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=base.seed))
    deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
    best: dict[str, TrainedClassifier] = {}

    def objective(trial: optuna.Trial) -> float:
        remaining = None if deadline is None else max(1.0, deadline - time.monotonic())
        budget = (
            remaining
            if base.time_budget_s is None or remaining is None
            else min(remaining, base.time_budget_s)
        )
        config = replace(base, **suggest(trial, space), time_budget_s=budget)
        model = train_classifier(
            config=config,
            train=train,
            validation=validation,
            runtime=runtime,
            progress=_trial_progress(progress, trial.number, n_trials),
            should_stop=should_stop,
        )
        value = float(model.stats.best_val_metric or 0.0)
        if "model" not in best or value > float(best["model"].stats.best_val_metric or 0.0):
            best["model"] = model
        return value

    study.optimize(objective, n_trials=n_trials, timeout=time_budget_s)
    if "model" not in best:
        raise MLError("No search trial finished within the budget.")
    return SearchResult(
        best_config=best["model"].config,
        best_value=study.best_value,
        trials=_trial_records(study),
        best_model=best["model"],
    )
