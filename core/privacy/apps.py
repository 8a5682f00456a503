from django.apps import AppConfig


class PrivacyConfig(AppConfig):
    name = "core.privacy"
    label = "privacy"
    verbose_name = "Privacy: audit log, export, deletion, encryption keys"

    def ready(self) -> None:
        from core.jobs.handlers import register_job_kind
        from core.jobs.queues import Queue
        from core.privacy.export import KIND, organisation_export

        register_job_kind(KIND, queue=Queue.DEFAULT, handler=organisation_export, metered=False)
