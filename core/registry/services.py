"""Writes for datasets and model versions: upload, train (as a job), promote, roll back, predict.

The ML work itself is ``core.ml`` (plain Python); this module decides *what* is stored where, who
pays, and which version serves. Artifacts are written complete into the store before a version row
points at them; only a version that beats the active one on the same held-out rows (or that an admin
forces) becomes active, and rollback re-activates the previous one in one transaction.
"""

import json
import shutil
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import Conflict, InvalidInput, NotFound, TrellisError
from core.jobs import services as jobs
from core.ml.errors import MLError
from core.registry.models import Dataset, ModelVersion, VersionStatus

SERVABLE = (VersionStatus.READY, VersionStatus.ACTIVE)
MAX_PREDICT_TEXTS = 256


def runtime(*, threads: int | None = None):
    from core.ml.runtime import Runtime

    return Runtime(
        base_model_path=settings.ML_BASE_MODEL_PATH,
        device=settings.ML_DEVICE,
        threads=threads or settings.ML_TRAIN_THREADS,
    )


def _next_version(queryset) -> int:
    return (queryset.aggregate(v=Max("version"))["v"] or 0) + 1


# --- Datasets ----------------------------------------------------------------------------------
def _dataset_dir(organisation_id: int, dataset_id: int) -> Path:
    return Path(settings.DATASET_STORE) / str(organisation_id) / str(dataset_id)


def dataset_upload(
    *, organisation, name: str, task: str, data: bytes, filename: str | None = None
) -> Dataset:
    """Validate, scrub, de-duplicate and split an upload, then store it as a new version of ``name``."""
    from core.ml.datasets import TASK_COLUMNS, DatasetError, parse_dataset, report_csv, stratified_split

    name = (name or "").strip()
    if not name:
        raise InvalidInput("A dataset needs a name.", details={"field": "name"})
    if task not in TASK_COLUMNS:
        raise InvalidInput(
            f"Unknown task '{task}'; use one of {', '.join(TASK_COLUMNS)}.", details={"field": "task"}
        )
    try:
        parsed = parse_dataset(data=data, task=task, filename=filename)
        split = stratified_split(rows=parsed.rows, stratify=task == "classification")
    except DatasetError as exc:
        raise InvalidInput(str(exc), details={"rejected": [r.__dict__ for r in exc.rejected[:20]]})
    billing.quota_check(organisation=organisation, meter=Meter.STORED_RECORDS, quantity=len(parsed.rows))
    with transaction.atomic():
        version = _next_version(Dataset.objects.for_org(organisation).filter(name=name))
        dataset = Dataset.all_tenants.create(
            organisation=organisation,
            name=name,
            task=task,
            version=version,
            fingerprint=parsed.fingerprint,
            row_count=len(parsed.rows),
            rejected_count=len(parsed.rejected),
            labels=list(parsed.labels),
            split_counts={
                "train": len(split.train),
                "validation": len(split.validation),
                "test": len(split.test),
                "scrubbed": len(parsed.scrubbed),
            },
            path="",
            source_filename=(filename or "")[:255],
        )
        folder = _dataset_dir(organisation.pk, dataset.pk)
        folder.mkdir(parents=True, exist_ok=True)
        rows = {"train": split.train, "validation": split.validation, "test": split.test}
        (folder / "rows.json").write_text(json.dumps({k: [list(r) for r in v] for k, v in rows.items()}))
        (folder / "report.csv").write_text(report_csv(parsed))
        dataset.path, dataset.report_path = str(folder / "rows.json"), str(folder / "report.csv")
        dataset.save(update_fields=["path", "report_path", "updated_at"])
    return dataset


def dataset_rows(*, dataset: Dataset) -> dict[str, list[tuple[str, str]]]:
    payload = json.loads(Path(dataset.path).read_text())
    return {split: [(a, b) for a, b in rows] for split, rows in payload.items()}


# --- Training ----------------------------------------------------------------------------------
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
    "time_budget_s",
    "lexical",
}
# A new tenant's first model: a head on frozen embeddings blended with TF-IDF trains in seconds on CPU
# and was the strongest setting on BANKING77 (BENCHMARKS.md); fine-tuning follows as its own job.
DEFAULT_TRAIN_CONFIG: dict[str, Any] = {"method": "head", "lexical": True}
FINE_TUNE_CONFIG: dict[str, Any] = {"method": "lora"}
MAX_SEARCH_TRIALS = 50
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
    ``time_budget_s``) from ``config``; ``follow_up`` is a config trained next, as its own job.
    """
    dataset = Dataset.objects.for_org(organisation).filter(pk=dataset_id).first()
    if dataset is None:
        raise NotFound("No such dataset.")
    if dataset.task != "classification":
        raise InvalidInput("Only classification datasets can train a classifier.")
    config = dict(DEFAULT_TRAIN_CONFIG) if config is None else config
    for settings_ in (config, follow_up):
        if settings_ is not None:
            _check_config(settings_)
    if search is not None:
        _check_search(search)
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


def _check_config(config: dict[str, Any]) -> None:
    unknown = sorted(set(config) - TRAIN_KEYS)
    if unknown:
        raise InvalidInput(f"Unknown training settings: {', '.join(unknown)}.", details={"field": "config"})
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


def _store_dir(organisation_id: int, app: str, task: str, version: int) -> Path:
    return Path(settings.MODEL_STORE) / str(organisation_id) / app / task / f"v{version}"


def train_job_handler(job, reporter) -> dict[str, Any]:
    """The ``ml.train`` job: train, evaluate on the held-out split, store, gate quantisation, promote."""
    from core.ml.artifact import save_artifact
    from core.ml.evaluate import evaluate_classifier
    from core.ml.runtime import resolve_device
    from core.ml.train import train_classifier

    params = job.params
    dataset = Dataset.objects.for_org(job.organisation).filter(pk=params["dataset_id"]).first()
    if dataset is None:
        raise InvalidInput("The dataset was deleted before training started.")
    rows = dataset_rows(dataset=dataset)
    cfg = _train_config(params.get("config") or {})
    rt = runtime()
    device = resolve_device(rt)
    jobs.job_set_device(job=job, device=device)

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

    started = timezone.now()
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
    if device == "cuda":
        jobs.job_add_gpu_seconds(job=job, seconds=(timezone.now() - started).total_seconds())
    held_out = rows["test"] or rows["validation"]
    metrics = evaluate_classifier(model_or_predictor=model, rows=held_out).to_dict()
    reporter.progress(0.93, "Evaluated on the held-out split", force=True)
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


def _register_version(
    *, job, dataset, model, metrics, held_out, save, cfg, device, reporter
) -> dict[str, Any]:
    from core.ml.serving import quantization_gate

    org, app, task = job.organisation, job.params["app"], job.params["task"]
    with transaction.atomic():
        version = _next_version(
            ModelVersion.objects.for_org(org).filter(app=app, task=task).select_for_update()
        )
        directory = _store_dir(org.pk, app, task, version)
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
        mv = ModelVersion.all_tenants.create(
            organisation=org,
            app=app,
            task=task,
            version=version,
            status=VersionStatus.READY,
            method=cfg.method,
            metrics=metrics,
            manifest=manifest,
            artifact_path=str(directory),
            labels=list(model.labels),
            data_fingerprint=dataset.fingerprint,
            dataset=dataset,
            training_job=job,
        )
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
    }


# --- Promotion and rollback ----------------------------------------------------------------------
def _active(organisation, app: str, task: str) -> ModelVersion | None:
    return (
        ModelVersion.objects.for_org(organisation)
        .filter(app=app, task=task, status=VersionStatus.ACTIVE)
        .first()
    )


def _activate(challenger: ModelVersion, note: str) -> None:
    ModelVersion.objects.for_org(challenger.organisation).filter(
        app=challenger.app, task=challenger.task, status=VersionStatus.ACTIVE
    ).update(status=VersionStatus.READY)
    challenger.status, challenger.promoted_at, challenger.promotion_note = (
        VersionStatus.ACTIVE,
        timezone.now(),
        note,
    )
    challenger.save(update_fields=["status", "promoted_at", "promotion_note", "updated_at"])


def model_promote_if_better(*, organisation, version_id: int, held_out) -> tuple[bool, str]:
    """Activate the challenger only if it beats the active version's accuracy on the same held-out rows."""
    from core.ml.evaluate import evaluate_classifier

    challenger = ModelVersion.objects.for_org(organisation).get(pk=version_id)
    active = _active(organisation, challenger.app, challenger.task)
    if active is None:
        note = "first version: activated"
    else:
        incumbent = evaluate_classifier(
            model_or_predictor=predictor_for(version=active), rows=held_out
        ).accuracy
        mine = evaluate_classifier(
            model_or_predictor=predictor_for(version=challenger), rows=held_out
        ).accuracy
        if mine <= incumbent:
            note = f"kept v{active.version}: {incumbent:.4f} >= {mine:.4f} accuracy on the same held-out rows"
            ModelVersion.all_tenants.filter(pk=challenger.pk).update(promotion_note=note)
            return False, note
        note = f"beat v{active.version}: {mine:.4f} > {incumbent:.4f} accuracy on the same held-out rows"
    with transaction.atomic():
        _activate(ModelVersion.objects.for_org(organisation).select_for_update().get(pk=version_id), note)
    return True, note


@transaction.atomic
def model_promote(*, organisation, version_id: int, force: bool = False) -> ModelVersion:
    version = ModelVersion.objects.for_org(organisation).select_for_update().filter(pk=version_id).first()
    if version is None:
        raise NotFound("No such model version.")
    if version.status not in SERVABLE:
        raise Conflict(f"A {version.status} version cannot be promoted.")
    if version.status == VersionStatus.ACTIVE:
        raise Conflict("This version is already active.")
    if not force:
        raise InvalidInput(
            "Promotion by hand must be forced (force=true); automatic promotion compares accuracy."
        )
    _activate(version, "forced by an admin")
    return version


@transaction.atomic
def model_rollback(*, organisation, app: str, task: str) -> ModelVersion:
    """Re-activate the most recently promoted version before the active one."""
    active = _active(organisation, app, task)
    if active is None:
        raise Conflict("Nothing is active to roll back.")
    previous = (
        ModelVersion.objects.for_org(organisation)
        .filter(app=app, task=task, status=VersionStatus.READY, promoted_at__isnull=False)
        .exclude(pk=active.pk)
        .order_by("-promoted_at")
        .first()
    )
    if previous is None:
        raise Conflict("There is no earlier promoted version to roll back to.")
    active.status = VersionStatus.READY
    active.promoted_at = None
    active.save(update_fields=["status", "promoted_at", "updated_at"])
    previous.status, previous.promotion_note = VersionStatus.ACTIVE, f"rolled back from v{active.version}"
    previous.save(update_fields=["status", "promotion_note", "updated_at"])
    return previous


@transaction.atomic
def model_archive(*, organisation, version_id: int) -> ModelVersion:
    version = ModelVersion.objects.for_org(organisation).select_for_update().filter(pk=version_id).first()
    if version is None:
        raise NotFound("No such model version.")
    if version.status == VersionStatus.ACTIVE:
        raise Conflict("The active version cannot be archived; promote or roll back first.")
    version.status = VersionStatus.ARCHIVED
    version.save(update_fields=["status", "updated_at"])
    return version


# --- Serving -----------------------------------------------------------------------------------
_cache_lock = threading.Lock()
_cache = None


def predictor_for(*, version: ModelVersion):
    global _cache
    from core.ml.serving import PredictorCache

    with _cache_lock:
        if _cache is None:
            _cache = PredictorCache(max_size=settings.ML_PREDICTOR_CACHE_SIZE)
    return _cache.get(
        version=f"{version.organisation_id}:{version.pk}",
        directory=Path(version.artifact_path),
        runtime=runtime(threads=settings.ML_SERVE_THREADS),
        quantized=version.quantized,
    )


def servable_version(*, organisation, version_id: int | None, app: str = "", task: str = "") -> ModelVersion:
    """The version to predict with (by id, or the active one for app/task); refuses one that cannot serve."""
    qs = ModelVersion.objects.for_org(organisation)
    version = qs.filter(pk=version_id).first() if version_id else _active(organisation, app, task)
    if version is None:
        raise NotFound("No such model version." if version_id else f"No active model for {app}/{task}.")
    if version.status not in SERVABLE:
        raise Conflict(f"This version is {version.status} and cannot serve predictions.")
    return version


def model_predict(
    *,
    organisation,
    version_id: int | None = None,
    app: str = "",
    task: str = "",
    texts: list[str],
    api_key=None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Predict with a version (or the active one for app/task), metered per text."""
    if not texts or len(texts) > MAX_PREDICT_TEXTS:
        raise InvalidInput(f"Send between 1 and {MAX_PREDICT_TEXTS} texts.", details={"field": "texts"})
    if any(not isinstance(t, str) or not t.strip() for t in texts):
        raise InvalidInput("Every text must be a non-empty string.", details={"field": "texts"})
    version = servable_version(organisation=organisation, version_id=version_id, app=app, task=task)
    billing.quota_check(organisation=organisation, meter=Meter.PREDICTIONS, quantity=len(texts))
    predictions = predictor_for(version=version).predict(texts)
    billing.usage_record(
        organisation=organisation,
        meter=Meter.PREDICTIONS,
        quantity=len(texts),
        api_key=api_key,
        idempotency_key=idempotency_key,
        enforce=False,
        metadata={"model_version": version.pk},
    )
    return {
        "model_version": version.pk,
        "version": version.version,
        "predictions": [
            {"label": p.label, "probabilities": p.probabilities, "version": version.version}
            for p in predictions
        ],
    }
