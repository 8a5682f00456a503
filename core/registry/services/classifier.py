"""The classifier kind: text -> one of a label set (intents, sentiment, topics).

Its training settings (the fast default, presets, the keys a caller may set and an Optuna search), how it
trains and is scored on the held-out split (accuracy, what promotion compares), the int8 gate it passes
before promotion, and how it loads and answers (``core.ml.serving.Predictor``, micro-batched online).
"""

from dataclasses import replace
from pathlib import Path
from typing import Any

from django.conf import settings

from core.errors import InvalidInput
from core.ml.artifact import save_artifact
from core.ml.errors import MLError
from core.ml.evaluate import evaluate_classifier
from core.ml.search import SearchSpace, search_hyperparameters
from core.ml.serving import load_predictor, quantization_gate
from core.ml.train import TrainConfig, train_classifier
from core.products import text_form_name
from core.registry.kinds import Trained
from core.registry.models import ModelVersion
from core.registry.services.common import plaintext_model_dir, runtime

TRAIN_KEYS = {
    "method",
    "epochs",
    "learning_rate",
    "batch_size",
    "lora_r",
    "lora_alpha",
    "max_length",
    "seed",
    "patience",
    "class_weights",
    "metric",
    "label_smoothing",
    "time_budget_s",
    "lexical",
    "calibrate",
}
# A new tenant's first model: a head on frozen embeddings blended with TF-IDF trains in seconds on CPU
# and was the strongest setting on BANKING77 (BENCHMARKS.md); fine-tuning follows as its own job.
DEFAULT_TRAIN_CONFIG: dict[str, Any] = {"method": "head", "lexical": True}
FINE_TUNE_CONFIG: dict[str, Any] = {"method": "lora"}
MAX_SEARCH_TRIALS = 50
# Settings only a fine-tune reads: the head is one convex fit on frozen embeddings (no epochs, no optimiser).
FINE_TUNE_KEYS = (
    "epochs",
    "learning_rate",
    "batch_size",
    "lora_r",
    "lora_alpha",
    "patience",
    "label_smoothing",
)
LORA_KEYS = ("lora_r", "lora_alpha")


def classifier_settings_check(
    *,
    config: dict[str, Any] | None,
    search: dict[str, Any] | None = None,
    follow_up: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Check a classifier's training settings (as the API and the command line send them); returns the config
    that will train (``None`` = ``DEFAULT_TRAIN_CONFIG``). Raises ``InvalidInput``; touches nothing."""
    config = dict(DEFAULT_TRAIN_CONFIG) if config is None else config
    for settings_ in (config, follow_up):
        if settings_ is not None:
            _check_config(settings_)
    if search is not None:
        _check_search(search)
        if config.get("method", "lora") == "head":
            raise InvalidInput(
                "A search varies fine-tuning settings (learning rate, epochs, LoRA rank): "
                "give a config with method lora or full.",
                details={"field": "search"},
            )
    return config


def _check_config(config: dict[str, Any]) -> None:
    unknown = sorted(set(config) - TRAIN_KEYS)
    if unknown:
        raise InvalidInput(f"Unknown training settings: {', '.join(unknown)}.", details={"field": "config"})
    method = config.get("method", "lora")
    ignored = [key for key in FINE_TUNE_KEYS if key in config] if method == "head" else []
    ignored += [key for key in LORA_KEYS if key in config] if method == "full" else []
    if ignored:
        needs = "lora" if set(ignored) <= set(LORA_KEYS) else "lora or full"
        raise InvalidInput(
            f"{', '.join(ignored)} only apply to method {needs}; method {method} would ignore "
            f"{'them' if len(ignored) > 1 else 'it'}.",
            details={"field": "config"},
        )
    train_config(config)  # validate now, not in the worker


def _check_search(search: dict[str, Any]) -> None:
    unknown = sorted(set(search) - {"n_trials", "time_budget_s"})
    n_trials, budget = search.get("n_trials", 8), search.get("time_budget_s")
    if unknown:
        raise InvalidInput(f"Unknown search settings: {', '.join(unknown)}.", details={"field": "search"})
    if not isinstance(n_trials, int) or not 1 <= n_trials <= MAX_SEARCH_TRIALS:
        raise InvalidInput(f"search.n_trials must be 1 to {MAX_SEARCH_TRIALS}.", details={"field": "search"})
    if budget is not None and (not isinstance(budget, int | float) or budget <= 0):
        raise InvalidInput(
            "search.time_budget_s must be a positive number of seconds.", details={"field": "search"}
        )


def train_config(config: dict[str, Any]) -> TrainConfig:
    try:
        cfg = TrainConfig(**config)
        cfg.validate()
    except (TypeError, MLError) as exc:
        raise InvalidInput(str(exc), details={"field": "config"})
    return cfg


def _search(search: dict[str, Any], base, train, validation, rt, progress, reporter):
    found = search_hyperparameters(
        base=base,
        space=SearchSpace(),
        train=train,
        validation=validation,
        runtime=rt,
        n_trials=search.get("n_trials", 8),
        time_budget_s=search.get("time_budget_s"),
        progress=progress,
        should_stop=reporter.cancelled,
    )
    return found.best_model, found.best_config, found.trials


class ClassifierKind:
    name = "classifier"
    dataset_task = "classification"
    operation = "predict"
    misuse = "This is a classification model: use /predict."
    batched = True

    def check_settings(self, *, config, search, follow_up) -> dict[str, Any]:
        return classifier_settings_check(config=config, search=search, follow_up=follow_up)

    def train(self, *, job, rows, config, search, runtime, progress, reporter) -> Trained:
        # the product's text form for the task (``ModelTask.text_form``), recorded with the version
        form = text_form_name(job.params["app"], job.params["task"])
        cfg = replace(train_config(config or {}), text_form=form)
        validation = rows["validation"] or rows["train"]
        trials: list[dict[str, Any]] = []
        if search:
            model, cfg, trials = _search(search, cfg, rows["train"], validation, runtime, progress, reporter)
        else:
            model = train_classifier(
                config=cfg,
                train=rows["train"],
                validation=validation,
                runtime=runtime,
                progress=progress,
                should_stop=reporter.cancelled,
            )
        # A split without test rows evaluates on validation; one without either (100/0/0) on the training
        # rows.
        evaluated_on = next(name for name in ("test", "validation", "train") if rows[name] or name == "train")
        held_out = rows[evaluated_on]
        metrics = evaluate_classifier(model_or_predictor=model, rows=held_out).to_dict()
        metrics["evaluated_on"] = evaluated_on
        reporter.progress(0.93, f"Evaluated on the {evaluated_on} split", force=True)
        return Trained(
            model=model,
            method=cfg.method,
            labels=list(model.labels),
            metrics=metrics,
            held_out=list(held_out),
            summary={
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "evaluated_on": evaluated_on,
            },
            extra={"trials": trials, "best_config": cfg.to_dict()} if trials else {},
        )

    def save(self, *, model, directory: Path, extra_manifest: dict[str, Any]) -> dict:
        return save_artifact(model=model, directory=directory, extra_manifest=extra_manifest)

    def after_store(self, *, version: ModelVersion, held_out, reporter) -> None:
        """The int8 gate: the version serves int8 only if it keeps accuracy on the held-out rows."""
        reporter.progress(0.96, "Measuring the quantised path", force=True)
        gate = quantization_gate(
            directory=plaintext_model_dir(version),
            rows=held_out,
            runtime=runtime(threads=settings.ML_TRAIN_THREADS),
        )
        ModelVersion.all_tenants.filter(pk=version.pk).update(
            quantization=gate, quantized=gate["use_quantized"]
        )
        version.quantization, version.quantized = gate, gate["use_quantized"]

    def load(self, *, directory: Path, name: str, runtime, quantized: bool):
        return load_predictor(directory=directory, version=name, runtime=runtime, quantized=quantized)

    def score(self, *, model, rows) -> tuple[float, str]:
        return evaluate_classifier(model_or_predictor=model, rows=rows).accuracy, "accuracy"

    def run(self, *, model, texts: list[str]):
        return model.predict(texts)
