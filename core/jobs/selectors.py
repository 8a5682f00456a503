"""Tenant-scoped reads for jobs."""

from django.db.models import QuerySet

from core.jobs.models import TrainingJob


def job_list(*, organisation, status: str | None = None, kind: str | None = None) -> QuerySet[TrainingJob]:
    qs = TrainingJob.objects.for_org(organisation).order_by("-created_at", "-id")
    if status:
        qs = qs.filter(status=status)
    if kind:
        qs = qs.filter(kind=kind)
    return qs


def job_get(*, organisation, job_id: int) -> TrainingJob | None:
    return TrainingJob.objects.for_org(organisation).filter(pk=job_id).first()
