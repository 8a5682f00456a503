"""The ``ml.train`` job and how it is started: defaults, presets, search, follow-up fine-tunes.

Artifacts are written complete into the store before a version row points at them; the new
version then goes through the promotion rule.
"""

import shutil
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import InvalidInput, NotFound, TrellisError
from core.jobs import services as jobs
from core.ml.errors import MLError
from core.registry.models import Dataset, ModelVersion, VersionStatus
from core.registry.paths import model_dir, validate_app, validate_id, validate_task
from core.registry.services.common import encrypt_model_dir, next_version, plaintext_model_dir, runtime
from core.registry.services.datasets import dataset_rows
from core.registry.services.embedding import DEFAULT_EMBED_CONFIG, embed_config, train_embedding
from core.registry.services.promotion import model_promote_if_better

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
# What the pages offer: name -> (config, search, follow_up).
TRAINING_PRESETS: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]] = {
    "auto": (None, None, FINE_TUNE_CONFIG),
    "head": (None, None, None),
    "lora": (FINE_TUNE_CONFIG, None, None),
    "full": ({"method": "full"}, None, None),
    "search": (FINE_TUNE_CONFIG, {"n_trials": 8, "time_budget_s": 1800}, None),
}


def model_train_start(
    *,
    organisation,
    dataset_id: int,
    app: str,
    task: str,
    config: dict[str, Any] | None = None,
    search: dict[str, Any] | None = None,
    follow_up: dict[str, Any] | None = None,
    created_by=None,
):
    """Queue an ``ml.train`` job.

    ``config=None`` means the fast default; ``search`` runs an Optuna search (``n_trials``,
    ``time_budget_s``) from ``config``; ``follow_up`` is a config trained next, as its own job. ``app`` and
    ``task`` become parts of the model's folder: they are checked before anything is created or counted.
    """
    app, task = validate_app(app), validate_task(task)
    dataset = Dataset.objects.for_org(organisation).filter(pk=validate_id(dataset_id, "dataset")).first()
    if dataset is None:
        raise NotFound("No such dataset.")
    if dataset.task == "pairs":
        config = dict(DEFAULT_EMBED_CONFIG) if config is None else config
        if search is not None:
            raise InvalidInput("Hyper-parameter search is for classifiers; pairs train one embedding model.")
        for settings_ in (config, follow_up):
            if settings_ is not None:
                embed_config(settings_)
    else:
        config = classifier_settings_check(config=config, search=search, follow_up=follow_up)
    billing.quota_check(organisation=organisation, meter=Meter.MODELS)
    params = {
        "dataset_id": dataset.pk,
        "app": app,
        "task": task,
        "config": config,
        "search": search,
        "follow_up": follow_up,
    }
    return jobs.job_create(
        organisation=organisation, kind="ml.train", params=params, created_by=created_by, app=app
    )


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
    _train_config(config)  # validate now, not in the worker


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


def _train_config(config: dict[str, Any]):
    from core.ml.train import TrainConfig

    try:
        cfg = TrainConfig(**config)
        cfg.validate()
    except (TypeError, MLError) as exc:
        raise InvalidInput(str(exc), details={"field": "config"})
    return cfg


def progress_callback(reporter):
    """Turn ``core.ml`` progress reports into job progress (the last 10% is evaluation and storage)."""

    def progress(p) -> None:
        metrics = {
            "step": p.step,
            "total_steps": p.total_steps,
            "epoch": p.epoch,
            "loss": p.loss,
            "val_metric": p.val_metric,
            "eta_s": p.eta_s,
        }
        reporter.progress(
            0.9 * p.step / max(1, p.total_steps), p.message or f"step {p.step}/{p.total_steps}", metrics
        )

    return progress


def train_job_handler(job, reporter) -> dict[str, Any]:
    """The ``ml.train`` job: train, evaluate on the held-out split, store, gate quantisation, promote."""
    from core.ml.artifact import save_artifact
    from core.ml.evaluate import evaluate_classifier
    from core.ml.runtime import resolve_device
    from core.ml.train import train_classifier

    params = _checked_params(job.params)
    dataset = Dataset.objects.for_org(job.organisation).filter(pk=params["dataset_id"]).first()
    if dataset is None:
        raise InvalidInput("The dataset was deleted before training started.")
    rows = dataset_rows(dataset=dataset)
    rt = runtime()
    device = resolve_device(rt)
    jobs.job_set_device(job=job, device=device)
    progress = progress_callback(reporter)
    started = timezone.now()
    if dataset.task == "pairs":
        result = train_embedding(
            job=job, dataset=dataset, rows=rows, reporter=reporter, progress=progress, device=device
        )
        _record_gpu_time(job, device, started)
        return _with_follow_up(job, result)
    cfg = _train_config(params.get("config") or {})
    validation = rows["validation"] or rows["train"]
    trials: list[dict[str, Any]] = []
    if job.params.get("search"):
        model, cfg, trials = _search(
            job.params["search"], cfg, rows["train"], validation, rt, progress, reporter
        )
    else:
        model = train_classifier(
            config=cfg,
            train=rows["train"],
            validation=validation,
            runtime=rt,
            progress=progress,
            should_stop=reporter.cancelled,
        )
    _record_gpu_time(job, device, started)
    # A split without test rows evaluates on validation; one without either (100/0/0) on the training rows.
    evaluated_on = next(name for name in ("test", "validation", "train") if rows[name] or name == "train")
    held_out = rows[evaluated_on]
    metrics = evaluate_classifier(model_or_predictor=model, rows=held_out).to_dict()
    metrics["evaluated_on"] = evaluated_on
    reporter.progress(0.93, f"Evaluated on the {evaluated_on} split", force=True)
    result = _register_version(
        job=job,
        dataset=dataset,
        model=model,
        metrics=metrics,
        held_out=held_out,
        save=save_artifact,
        cfg=cfg,
        device=device,
        reporter=reporter,
    )
    if trials:
        result["trials"], result["best_config"] = trials, cfg.to_dict()
    return _with_follow_up(job, result)


def _checked_params(params: object) -> dict[str, Any]:
    """Defence in depth: a job row reaches the handler only through ``model_train_start``, but its params
    name a folder, so they are checked again here (a bad row fails the job; nothing is written)."""
    if not isinstance(params, dict):
        raise InvalidInput("The training job has no parameters.")
    validate_id(params.get("dataset_id"), "dataset_id")
    validate_app(params.get("app"))
    validate_task(params.get("task"))
    return params


def _record_gpu_time(job, device: str, started) -> None:
    if device == "cuda":
        jobs.job_add_gpu_seconds(job=job, seconds=(timezone.now() - started).total_seconds())


def _with_follow_up(job, result: dict[str, Any]) -> dict[str, Any]:
    if job.params.get("follow_up"):
        result["follow_up"] = _start_follow_up(job)
    return result


def _search(search: dict[str, Any], base, train, validation, rt, progress, reporter):
    from core.ml.search import SearchSpace, search_hyperparameters

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


def _start_follow_up(job) -> dict[str, Any]:
    """Queue the slower fine-tune after the fast model; it replaces it only through the promotion rule."""
    params = job.params
    try:
        follow = model_train_start(
            organisation=job.organisation,
            dataset_id=params["dataset_id"],
            app=params["app"],
            task=params["task"],
            config=params["follow_up"],
            created_by=job.created_by,
        )
    except TrellisError as exc:
        return {"error": exc.message}
    return {"job": follow.pk}


def store_version(*, job, dataset, save, model, metrics, method: str, labels: list[str], device: str):
    """Write the artifact completely into the store, then create the (ready) version row pointing at it."""
    params = _checked_params(job.params)
    org, app, task = job.organisation, params["app"], params["task"]
    with transaction.atomic():
        version = next_version(
            ModelVersion.objects.for_org(org).filter(app=app, task=task).select_for_update()
        )
        directory = model_dir(organisation_id=org.pk, app=app, task=task, version=version)
        if directory.exists():  # left by a version row that never committed
            shutil.rmtree(directory)
        manifest = save(
            model=model,
            directory=directory,
            extra_manifest={
                "product_task": task,
                "app": app,
                "version": version,
                "metrics": metrics,
                "data_fingerprint": dataset.fingerprint,
                "dataset": {"id": dataset.pk, "name": dataset.name},
                "device": device,
            },
        )
        encrypt_model_dir(directory, org.pk)
        return ModelVersion.all_tenants.create(
            organisation=org,
            app=app,
            task=task,
            version=version,
            status=VersionStatus.READY,
            method=method,
            metrics=metrics,
            manifest=manifest,
            artifact_path=str(directory),
            labels=labels,
            data_fingerprint=dataset.fingerprint,
            dataset=dataset,
            training_job=job,
        )


def _register_version(
    *, job, dataset, model, metrics, held_out, save, cfg, device, reporter
) -> dict[str, Any]:
    from core.ml.serving import quantization_gate

    mv = store_version(
        job=job,
        dataset=dataset,
        save=save,
        model=model,
        metrics=metrics,
        method=cfg.method,
        labels=list(model.labels),
        device=device,
    )
    directory, org, version = plaintext_model_dir(mv), job.organisation, mv.version
    reporter.progress(0.96, "Measuring the quantised path", force=True)
    gate = quantization_gate(
        directory=directory, rows=held_out, runtime=runtime(threads=settings.ML_TRAIN_THREADS)
    )
    ModelVersion.all_tenants.filter(pk=mv.pk).update(quantization=gate, quantized=gate["use_quantized"])
    promoted, reason = model_promote_if_better(organisation=org, version_id=mv.pk, held_out=held_out)
    return {
        "model_version": mv.pk,
        "version": version,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "promoted": promoted,
        "promotion": reason,
        "evaluated_on": metrics.get("evaluated_on", "test"),
    }
