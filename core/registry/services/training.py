"""The ``ml.train`` job and how it is started, for every kind: presets, follow-up fine-tunes, storing.

The version's kind (``core.registry.kinds``) checks the settings, trains and evaluates; this module decides
where the artifact goes and what the job reports. Artifacts are written complete into the store before a
version row points at them; the new version then goes through the promotion rule.
"""

import shutil
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import InvalidInput, NotFound, TrellisError
from core.jobs import services as jobs
from core.jobs.models import JobStatus, TrainingJob
from core.ml.runtime import resolve_device
from core.products import model_task
from core.registry.kinds import ModelKind, Trained, kind_for_training
from core.registry.models import Dataset, ModelVersion, VersionStatus
from core.registry.paths import model_dir, validate_app, validate_id, validate_task
from core.registry.services.classifier import (  # noqa: F401 - re-exported: the classifier's settings
    DEFAULT_TRAIN_CONFIG,
    FINE_TUNE_CONFIG,
    TRAIN_KEYS,
    classifier_settings_check,
)
from core.registry.services.common import encrypt_model_dir, next_version, runtime
from core.registry.services.datasets import dataset_rows
from core.registry.services.promotion import model_promote_if_better

# What the pages offer: name -> (config, search, follow_up). The pages' Train starts the fast model only
# (one training job of the plan); the fine-tune after it is offered on the finished job's page
# (``model_fine_tune_start``), never spent silently. The API's ``follow_up`` stays an explicit choice.
TRAINING_PRESETS: dict[str, tuple[dict[str, Any] | None, dict[str, Any] | None, dict[str, Any] | None]] = {
    "auto": (None, None, None),
    "head": (None, None, None),
    "lora": (FINE_TUNE_CONFIG, None, None),
    # three epochs with the TF-IDF blend: on CLINC150, 96.7% of in-scope questions right and, with the
    # out-of-scope score, 96.3% right where 75% of out-of-scope ones are handed on (BENCHMARKS.md 17)
    "full": ({"method": "full", "epochs": 3, "lexical": True}, None, None),
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
    params = train_job_params(
        dataset=dataset, app=app, task=task, config=config, search=search, follow_up=follow_up
    )
    billing.quota_check(organisation=organisation, meter=Meter.MODELS)
    return jobs.job_create(
        organisation=organisation, kind="ml.train", params=params, created_by=created_by, app=app
    )


def train_job_params(
    *,
    dataset: Dataset,
    app: str,
    task: str,
    config: dict[str, Any] | None = None,
    search: dict[str, Any] | None = None,
    follow_up: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters ``train_job_handler`` reads, the settings checked by the kind that trains ``dataset``
    (``InvalidInput`` for bad ones): for ``model_train_start``, and for a product's own job that builds its
    dataset first and then trains it with ``train_job_handler`` in the same job."""
    return {
        "dataset_id": dataset.pk,
        "app": app,
        "task": task,
        "config": training_kind(app, task, dataset).check_settings(
            config=config, search=search, follow_up=follow_up
        ),
        "search": search,
        "follow_up": follow_up,
        "rows": (dataset.split_counts or {}).get("train") or dataset.row_count,  # what the job page says
    }


def training_kind(app: str, task: str, dataset: Dataset) -> ModelKind:
    """The kind that trains ``dataset`` for ``app``/``task``: the one the product declares for the task when
    it trains on this dataset's task, else core's kind for it (classification -> classifier, pairs ->
    embedding)."""
    declared = model_task(app, task)
    return kind_for_training(declared=declared.kind if declared else None, dataset_task=dataset.task)


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
    """The ``ml.train`` job: the kind trains and evaluates on its held-out split; the version is stored, the
    kind's checks run on it (the classifier's int8 gate), then the promotion rule decides."""
    params = _checked_params(job.params)
    dataset = Dataset.objects.for_org(job.organisation).filter(pk=params["dataset_id"]).first()
    if dataset is None:
        raise InvalidInput("The dataset was deleted before training started.")
    kind = training_kind(params["app"], params["task"], dataset)
    rows = dataset_rows(dataset=dataset)
    rt = runtime()
    device = resolve_device(rt)
    jobs.job_set_device(job=job, device=device)
    started = timezone.now()
    trained = kind.train(
        job=job,
        rows=rows,
        config=params.get("config") or {},
        search=params.get("search"),
        runtime=rt,
        progress=progress_callback(reporter),
        reporter=reporter,
    )
    _record_gpu_time(job, device, started)
    mv = store_version(job=job, dataset=dataset, kind=kind, trained=trained, device=device)
    kind.after_store(version=mv, held_out=trained.held_out, reporter=reporter)
    promoted, reason = model_promote_if_better(
        organisation=job.organisation, version_id=mv.pk, held_out=trained.held_out
    )
    result = {"model_version": mv.pk, "version": mv.version, **trained.summary}
    result.update(promoted=promoted, promotion=reason, **trained.extra)
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


def fine_tune_offered(job) -> bool:
    """Whether the finished job's page offers a fine-tune: a classifier trained with the fast default (a head
    on frozen embeddings) whose job succeeded and has started no fine-tune yet."""
    if job.kind != "ml.train" or job.status != JobStatus.SUCCEEDED or not isinstance(job.params, dict):
        return False
    if (job.result or {}).get("follow_up") or (job.params.get("config") or {}).get("method") != "head":
        return False
    version = ModelVersion.objects.for_org(job.organisation).filter(training_job=job).first()
    return version is not None and version.kind == "classifier"


def model_fine_tune_start(*, organisation, job_id: int, created_by=None):
    """Start the fine-tune a finished fast-model job offers (one more training job of the plan), on the same
    dataset, product and task; it replaces the fast model only through the promotion rule. Idempotent: a
    second click returns the job the first one started."""
    with transaction.atomic():
        job = (
            TrainingJob.objects.for_org(organisation)
            .select_for_update()
            .filter(pk=validate_id(job_id, "job"))
            .first()
        )
        if job is None:
            raise NotFound("No such job.")
        started = ((job.result or {}).get("follow_up") or {}).get("job")
        if started:
            follow = TrainingJob.objects.for_org(organisation).filter(pk=started).first()
            if follow is not None:
                return follow
        if not fine_tune_offered(job):
            raise InvalidInput("Only a finished fast model can be fine-tuned from its job page.")
        follow = model_train_start(
            organisation=organisation,
            dataset_id=job.params["dataset_id"],
            app=job.params["app"],
            task=job.params["task"],
            config=dict(FINE_TUNE_CONFIG),
            created_by=created_by,
        )
        job.result = {**job.result, "follow_up": {"job": follow.pk, "offered": True}}
        job.save(update_fields=["result", "updated_at"])
    return follow


def store_version(*, job, dataset, kind: ModelKind, trained: Trained, device: str) -> ModelVersion:
    """Write the artifact completely into the store (the kind's ``save``), then create the (ready) version row
    pointing at it."""
    params = _checked_params(job.params)
    org, app, task = job.organisation, params["app"], params["task"]
    with transaction.atomic():
        version = next_version(
            ModelVersion.objects.for_org(org).filter(app=app, task=task).select_for_update()
        )
        directory = model_dir(organisation_id=org.pk, app=app, task=task, version=version)
        if directory.exists():  # left by a version row that never committed
            shutil.rmtree(directory)
        manifest = kind.save(
            model=trained.model,
            directory=directory,
            extra_manifest={
                "product_task": task,
                "app": app,
                "version": version,
                "metrics": trained.metrics,
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
            kind=kind.name,
            status=VersionStatus.READY,
            method=trained.method,
            metrics=trained.metrics,
            manifest=manifest,
            artifact_path=str(directory),
            labels=trained.labels,
            data_fingerprint=dataset.fingerprint,
            dataset=dataset,
            training_job=job,
        )
