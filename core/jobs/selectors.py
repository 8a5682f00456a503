"""Tenant-scoped reads for jobs."""

from pathlib import Path

from django.db.models import QuerySet

from core.jobs.models import TrainingJob
from core.storage import UnsafePath, export_path


def job_list(*, organisation, status: str | None = None, kind: str | None = None) -> QuerySet[TrainingJob]:
    qs = TrainingJob.objects.for_org(organisation).order_by("-created_at", "-id")
    if status:
        qs = qs.filter(status=status)
    if kind:
        qs = qs.filter(kind=kind)
    return qs


def job_get(*, organisation, job_id: int) -> TrainingJob | None:
    return TrainingJob.objects.for_org(organisation).filter(pk=job_id).first()


def job_result_file(*, organisation, job_id: int) -> Path | None:
    """The file a finished job wrote for download (exports of its own organisation only), if any."""
    job = job_get(organisation=organisation, job_id=job_id)
    name = (job.result or {}).get("file") if job is not None and job.status == "succeeded" else None
    if not name:
        return None
    try:
        path = export_path(organisation.pk, name)
    except UnsafePath:
        return None
    return path if path.is_file() else None
