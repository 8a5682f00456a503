"""The Celery application: three named queues and the routing of tasks onto them.

Tasks live in each app's ``tasks.py`` as thin shells over services. They are routed by the
queue their decorator names; this module only declares the queues.
"""

import os

from celery import Celery
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")

app = Celery("trellis")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue("train"), Queue("infer"), Queue("default")]
app.conf.task_default_queue = "default"
app.autodiscover_tasks()
