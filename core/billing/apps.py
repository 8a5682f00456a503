from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "core.billing"
    label = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from core.billing.jobs import usage_export
        from core.jobs.handlers import register_job_kind
        from core.jobs.queues import Queue

        register_job_kind("usage.export", queue=Queue.DEFAULT, handler=usage_export, metered=False)
