"""The Celery application: three named queues and the routing of tasks onto them.

Tasks live in each app's ``tasks.py`` as thin shells over services. They are routed by the
queue their decorator names; this module only declares the queues.
"""

import os

from celery import Celery
from celery.signals import worker_process_init
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")

app = Celery("trellis")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("train"), Queue("infer"), Queue("default")]
app.conf.task_default_queue = "default"
app.autodiscover_tasks()


@worker_process_init.connect
def _warm_models(**_kwargs) -> None:
    """Each process that runs tasks (a prefork child, or the solo worker itself) loads the active models
    in the background at start, as web processes do (core.registry.services.warmup), less the products' own
    warm-ups (what web processes serve, such as the chatbot's answer generator)."""
    from core.registry.services.warmup import warmup_at_start

    warmup_at_start(with_products=False)
