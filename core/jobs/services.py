"""Writes for jobs: create (metered, enqueued after commit), run, report progress, finish, cancel.

State moves only forward (queued -> running -> succeeded | failed | cancelled) through conditional
UPDATEs, so a cancel that lands while a worker is reporting wins, and the worker stops at its next
report. A worker that dies leaves a running job without heartbeats; ``job_reap_stale`` fails it.
"""

import logging
import os
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.billing import services as billing
from core.billing.models import Meter
from core.celery import app as celery_app
from core.errors import Conflict, InvalidInput, NotFound, TrellisError
from core.jobs.describe import job_sentence
from core.jobs.handlers import job_kind
from core.jobs.models import ACTIVE_STATUSES, JobStatus, TrainingJob
from core.realtime import broadcast, org_group

log = logging.getLogger(__name__)
HEARTBEAT_TIMEOUT = timedelta(seconds=getattr(settings, "JOB_HEARTBEAT_TIMEOUT_S", 300))
# What a job's owner sees when its handler fails unexpectedly: exception texts name server paths and
# internals, so they go to the worker's log only. Domain errors (TrellisError) keep their own message.
INTERNAL_FAILURE = (
    "The job failed on the worker because of an internal error (job {job_id}); it has been logged."
)


class JobCancelled(Exception):
    """Raised inside a handler when its job was cancelled; the job stays cancelled."""


def job_payload(job: TrainingJob) -> dict[str, Any]:
    return {
        "id": job.pk,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "metrics": job.metrics,
        "device": job.device,
        "error": job.error,
        "sentence": job_sentence(job),
    }


def _broadcast(job: TrainingJob) -> None:
    broadcast(
        group=org_group(job.organisation_id, "jobs"), event_type="job.progress", payload=job_payload(job)
    )


def job_create(
    *, organisation, kind: str, params: dict[str, Any] | None = None, created_by=None, app: str = "core"
) -> TrainingJob:
    spec = job_kind(kind)
    if spec is None:
        raise InvalidInput(f"Unknown job kind '{kind}'.")
    with transaction.atomic():
        job = TrainingJob.all_tenants.create(
            organisation=organisation,
            kind=kind,
            app=app,
            queue=spec.queue,
            params=params or {},
            created_by=created_by,
        )
        if spec.metered:
            billing.usage_record(
                organisation=organisation,
                meter=Meter.TRAINING_JOBS,
                idempotency_key=f"job:{job.pk}",
                metadata={"job": job.pk, "kind": kind},
            )
        transaction.on_commit(lambda: _enqueue(job))
    return job


def _enqueue(job: TrainingJob) -> None:
    # The task by its name (core.jobs.tasks registers it): tasks call these services, so importing the task
    # here would make the two modules import each other.
    celery_app.tasks["jobs.run"].apply_async(args=(job.pk,), queue=job.queue)


def _update(job_id: int, *, statuses, **fields: Any) -> bool:
    return bool(TrainingJob.all_tenants.filter(pk=job_id, status__in=statuses).update(**fields))


def job_start(*, job_id: int, device: str = "") -> TrainingJob | None:
    now = timezone.now()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    started = _update(
        job_id,
        statuses=[JobStatus.QUEUED],
        status=JobStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=worker,
        device=device,
        message="Started",
    )
    job = TrainingJob.all_tenants.filter(pk=job_id).first()
    if job is not None and started:
        _broadcast(job)
    return job if started else None


class JobReporter:
    """Handed to job handlers: records progress and raises JobCancelled once the job is cancelled."""

    def __init__(
        self,
        job: TrainingJob,
        *,
        min_interval_s: float = 0.5,
        on_progress: Callable[[TrainingJob], None] | None = None,
    ) -> None:
        self.job = job
        self.min_interval_s = min_interval_s
        self.on_progress = on_progress
        self._last = 0.0

    def progress(
        self, fraction: float, message: str = "", metrics: dict[str, Any] | None = None, force: bool = False
    ) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.min_interval_s:
            if self.cancelled():
                raise JobCancelled()
            return
        self._last = now
        fields: dict[str, Any] = {"progress": max(0.0, min(1.0, fraction)), "heartbeat_at": timezone.now()}
        if message:
            fields["message"] = message[:300]
        if metrics is not None:
            fields["metrics"] = metrics
        if not _update(self.job.pk, statuses=[JobStatus.RUNNING], **fields):
            raise JobCancelled()
        for key, value in fields.items():
            setattr(self.job, key, value)
        _broadcast(self.job)
        if self.on_progress is not None:
            self.on_progress(self.job)

    def cancelled(self) -> bool:
        return TrainingJob.all_tenants.filter(pk=self.job.pk, status=JobStatus.CANCELLED).exists()


def job_execute(*, job_id: int, on_progress: Callable[[TrainingJob], None] | None = None) -> None:
    """Run a queued job in this worker process. Never raises for a handler's failure.

    ``on_progress(job)`` is called after each recorded progress report (the command line prints them).
    """
    spec_job = TrainingJob.all_tenants.filter(pk=job_id).first()
    if spec_job is None:
        log.warning("job %s vanished before it ran", job_id)
        return
    spec = job_kind(spec_job.kind)
    job = job_start(job_id=job_id)
    if job is None:
        return  # cancelled (or already taken) before it started
    if spec is None:
        job_fail(job_id=job_id, error=f"No handler for job kind '{job.kind}' on this worker.")
        return
    reporter = JobReporter(job, on_progress=on_progress)
    try:
        result = spec.handler(job, reporter)
    except JobCancelled:
        _release(job)
        return
    except TrellisError as exc:
        job_fail(job_id=job_id, error=exc.message)
        _release(job)
        return
    except Exception:  # noqa: BLE001 - any failure becomes a failed job; the detail stays in the log
        log.exception("job %s failed", job_id)
        job_fail(job_id=job_id, error=INTERNAL_FAILURE.format(job_id=job_id))
        _release(job)
        return
    if not job_succeed(job_id=job_id, result=result or {}):
        _release(job)  # cancelled while its last step ran: nothing was delivered


def _release(job: TrainingJob) -> None:
    """Give back what the job's kind took at its start (idempotent: it may be called more than once)."""
    spec = job_kind(job.kind)
    if spec is None or spec.release is None:
        return
    try:
        spec.release(job)
    except Exception:  # noqa: BLE001 - the job's state is settled; a failed refund is logged, not raised
        log.exception("could not release what job %s took", job.pk)


def _finish(job_id: int, status: str, **fields: Any) -> bool:
    done = _update(job_id, statuses=[JobStatus.RUNNING], status=status, finished_at=timezone.now(), **fields)
    job = TrainingJob.all_tenants.filter(pk=job_id).first()
    if done and job is not None:
        _broadcast(job)
    return done


def job_succeed(*, job_id: int, result: dict[str, Any]) -> bool:
    return _finish(job_id, JobStatus.SUCCEEDED, progress=1.0, result=result, message="Done")


def job_fail(*, job_id: int, error: str) -> bool:
    return _finish(job_id, JobStatus.FAILED, error=error[:5000], message="Failed")


def job_set_device(*, job: TrainingJob, device: str) -> None:
    TrainingJob.all_tenants.filter(pk=job.pk).update(device=device)
    job.device = device


def job_add_gpu_seconds(*, job: TrainingJob, seconds: float) -> None:
    """Record GPU time on the job and in the ledger (GPU minutes), without enforcing mid-run."""
    if seconds <= 0:
        return
    TrainingJob.all_tenants.filter(pk=job.pk).update(gpu_seconds=job.gpu_seconds + seconds)
    billing.usage_record(
        organisation=job.organisation,
        meter=Meter.GPU_MINUTES,
        quantity=round(seconds / 60, 3),
        idempotency_key=f"job-gpu:{job.pk}",
        metadata={"job": job.pk},
        enforce=False,
    )


def job_cancel(*, organisation, job_id: int) -> TrainingJob:
    job = TrainingJob.objects.for_org(organisation).filter(pk=job_id).first()
    if job is None:
        raise NotFound("No such job.")
    if job.status not in ACTIVE_STATUSES:
        raise Conflict(f"The job is already {job.status}; only queued or running jobs can be cancelled.")
    if not _update(
        job.pk,
        statuses=list(ACTIVE_STATUSES),
        status=JobStatus.CANCELLED,
        finished_at=timezone.now(),
        message="Cancelled",
    ):
        job.refresh_from_db()
        raise Conflict(f"The job is already {job.status}.")
    job.refresh_from_db()
    _broadcast(job)
    _release(job)
    return job


def job_reap_stale(*, timeout: timedelta = HEARTBEAT_TIMEOUT) -> int:
    """Fail running jobs whose worker went silent (killed, out of memory, host lost)."""
    cutoff = timezone.now() - timeout
    stale = list(
        TrainingJob.all_tenants.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    reaped = 0
    for job_id in stale:
        failed = job_fail(
            job_id=job_id,
            error=f"The worker stopped reporting for over {int(timeout.total_seconds())} s "
            "(killed or crashed); nothing it was writing was kept.",
        )
        if failed:
            _release(TrainingJob.all_tenants.select_related("organisation").get(pk=job_id))
        reaped += failed
    return reaped
