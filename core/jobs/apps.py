from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "core.jobs"
    label = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        # Registers the Celery tasks in every process (not only workers): services enqueue "jobs.run" by name.
        from core.jobs import tasks  # noqa: F401 - a module imported for its side effect, once models load
