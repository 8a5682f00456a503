"""Tenant-scoped reads for datasets and model versions."""

from django.db.models import QuerySet

from core.registry.models import Dataset, ModelVersion


def dataset_list(*, organisation) -> QuerySet[Dataset]:
    return Dataset.objects.for_org(organisation).order_by("-created_at", "-id")


def dataset_get(*, organisation, dataset_id: int) -> Dataset | None:
    return dataset_list(organisation=organisation).filter(pk=dataset_id).first()


def model_list(*, organisation, app: str | None = None, task: str | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.for_org(organisation).order_by("app", "task", "-version")
    if app:
        qs = qs.filter(app=app)
    return qs.filter(task=task) if task else qs


def model_get(*, organisation, version_id: int) -> ModelVersion | None:
    return ModelVersion.objects.for_org(organisation).filter(pk=version_id).first()
