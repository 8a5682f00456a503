"""What the registry services share: the ML runtime settings and version numbering."""

from django.conf import settings
from django.db.models import Max

from core.registry.models import ModelVersion, VersionStatus

SERVABLE = (VersionStatus.READY, VersionStatus.ACTIVE)
MAX_PREDICT_TEXTS = 256


def runtime(*, threads: int | None = None):
    from core.ml.runtime import Runtime

    return Runtime(
        base_model_path=settings.ML_BASE_MODEL_PATH,
        device=settings.ML_DEVICE,
        threads=threads or settings.ML_TRAIN_THREADS,
    )


def next_version(queryset) -> int:
    return (queryset.aggregate(v=Max("version"))["v"] or 0) + 1


def active_version(organisation, app: str, task: str) -> ModelVersion | None:
    return (
        ModelVersion.objects.for_org(organisation)
        .filter(app=app, task=task, status=VersionStatus.ACTIVE)
        .first()
    )
