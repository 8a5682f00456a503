from celery.signals import worker_process_init
from django.apps import AppConfig


def _warm_worker_process(**_kwargs) -> None:
    """Each process that runs tasks (a prefork child, or the solo worker itself) loads the active models in
    the background at start, as web processes do (core.registry.services.warmup), less the products' own
    warm-ups (what web processes serve, such as the chatbot's answer generator). Connected here, not in
    ``core.celery``: the warm-up reads the products, and ``core.products`` reads the Celery app."""
    from core.registry.services.warmup import warmup_at_start

    warmup_at_start(with_products=False, batch=True)


class RegistryConfig(AppConfig):
    name = "core.registry"
    label = "registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        # Imports here, not at the top: models (and modules that import them) load only once the app
        # registry is ready; this runs then.
        from django.db.models import Sum

        from core.billing.meters import register_stock_counter
        from core.billing.models import Meter
        from core.registry import checks  # noqa: F401 - registers the base model check
        from core.registry.models import Dataset, ModelVersion, VersionStatus

        def models_count(organisation) -> int:
            live = (VersionStatus.READY, VersionStatus.ACTIVE, VersionStatus.TRAINING)
            versions = ModelVersion.objects.for_org(organisation).filter(status__in=live)
            # a version trained on a product's shipped rows (its default model) is the product's, as they are
            return versions.exclude(dataset__shipped=True).count()

        def dataset_rows(organisation) -> int:
            own = Dataset.objects.for_org(organisation).filter(shipped=False)  # shipped rows are not counted
            return own.aggregate(n=Sum("row_count"))["n"] or 0

        from core.jobs.handlers import register_job_kind
        from core.jobs.queues import Queue
        from core.registry.batch import batch_predict_handler, batch_predict_release
        from core.registry.describe import train_job_sentence
        from core.registry.kinds import register_kind
        from core.registry.rows import KIND, rows_infer_handler, rows_infer_release
        from core.registry.services import train_job_handler
        from core.registry.services.classifier import ClassifierKind
        from core.registry.services.embedding import EmbeddingKind

        # core's two model kinds, before any product (apps after this one) declares model tasks of a kind
        register_kind(ClassifierKind())
        register_kind(EmbeddingKind())

        register_job_kind(
            "ml.train",
            queue=Queue.TRAIN,
            handler=train_job_handler,
            metered=True,
            describe=train_job_sentence,
        )
        register_job_kind(
            "ml.batch_predict",
            queue=Queue.INFER,
            handler=batch_predict_handler,
            metered=False,
            release=batch_predict_release,
        )
        register_job_kind(
            KIND, queue=Queue.INFER, handler=rows_infer_handler, metered=False, release=rows_infer_release
        )
        register_stock_counter(Meter.MODELS, "model versions", models_count)
        register_stock_counter(Meter.STORED_RECORDS, "dataset rows", dataset_rows)
        worker_process_init.connect(_warm_worker_process, weak=False, dispatch_uid="registry.warm_worker")

        # Which version serves is cached per process by hot paths (core.generations): any saved or deleted
        # version of an organisation gives its "registry" scope a new token once the write commits.
        from django.db.models.signals import post_delete, post_save

        from core.generations import bump_for_row

        def versions_changed(sender, instance, **kwargs) -> None:
            bump_for_row(instance, scope="registry")

        post_save.connect(versions_changed, sender=ModelVersion, weak=False, dispatch_uid="registry.gen")
        post_delete.connect(versions_changed, sender=ModelVersion, weak=False, dispatch_uid="registry.gen-d")
