"""Where the registry keeps files, and the identifiers those paths are made of.

A model's folder is ``MODEL_STORE/<org id>/<app>/<task>/v<version>``, a dataset's
``DATASET_STORE/<org id>/<dataset id>``, a batch input ``DATASET_STORE/<org id>/batch/<uuid hex>.json``.
``app`` must be a registered product (``core.products``) or ``core``, and ``task`` a slug: both are checked
at every entry point (API, pages, commands) and again by the job handlers, and ``core.storage.org_path``
refuses any result outside the organisation's folder.
"""

import re
from pathlib import Path

from django.conf import settings

from core.errors import InvalidInput
from core.products import model_tasks, products, products_training
from core.storage import UnsafePath, org_path

TASK_PATTERN = r"^[a-z][a-z0-9_]{0,49}$"
_TASK = re.compile(TASK_PATTERN)
_BATCH_NAME = re.compile(r"^[0-9a-f]{32}\.json$")
PLATFORM_APP = "core"  # models the platform itself trains, outside any product


def model_apps() -> tuple[str, ...]:
    """What models can be trained for: the registered products (``core.products``, so core names none of
    them) and ``core``."""
    return tuple(sorted({p.name for p in products()} | {PLATFORM_APP}))


def validate_app(app: object) -> str:
    if not isinstance(app, str) or app not in model_apps():
        raise InvalidInput(
            f"Unknown product; use one of {', '.join(model_apps())}.", details={"field": "app"}
        )
    return app


def app_for_task(task: str) -> str:
    """The product declaring the model task ``task`` (``Product.model_tasks``): the commands' default app."""
    owners = [p.name for p in products_training(task)]
    if len(owners) != 1:
        raise InvalidInput(
            f"Say which product the '{task}' model is for; use one of {', '.join(model_apps())}.",
            details={"field": "app"},
        )
    return owners[0]


def default_classifier_task() -> str:
    """The one classifier task the products declare (the predict command's default), or a refusal."""
    tasks = model_tasks("classifier")
    if len(tasks) != 1:
        raise InvalidInput("Say which task to predict with (--task).", details={"field": "task"})
    return tasks[0]


def validate_task(task: object) -> str:
    if not isinstance(task, str) or not _TASK.fullmatch(task):
        raise InvalidInput(
            "A task is 1 to 50 lower-case letters, digits or underscores, starting with a letter.",
            details={"field": "task"},
        )
    return task


def validate_id(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidInput(f"'{field}' must be a positive integer id.", details={"field": field})
    return value


def model_dir(*, organisation_id: int, app: str, task: str, version: int) -> Path:
    return org_path(
        settings.MODEL_STORE,
        organisation_id,
        validate_app(app),
        validate_task(task),
        f"v{validate_id(version, 'version')}",
    )


def dataset_dir(*, organisation_id: int, dataset_id: int) -> Path:
    return org_path(settings.DATASET_STORE, organisation_id, str(validate_id(dataset_id, "dataset")))


def batch_file(*, organisation_id: int, name: object) -> Path:
    """A batch input the start service wrote: a uuid hex ``.json`` name inside the organisation's folder."""
    if not isinstance(name, str) or not _BATCH_NAME.fullmatch(name):
        raise UnsafePath()
    return org_path(settings.DATASET_STORE, organisation_id, "batch", name)
