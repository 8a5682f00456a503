from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "core.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from core.billing.jobs import usage_export
        from core.billing.models import meters_sync_after_migrate
        from core.jobs.handlers import register_job_kind
        from core.jobs.queues import Queue

        register_job_kind("usage.export", queue=Queue.DEFAULT, handler=usage_export, metered=False)
        post_migrate.connect(meters_sync_after_migrate, sender=self, dispatch_uid="billing-meters-sync")
