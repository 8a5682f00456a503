"""Where the registry keeps files, and the identifiers those paths are made of.

A model's folder is ``MODEL_STORE/<org id>/<app>/<task>/v<version>``, a dataset's
``DATASET_STORE/<org id>/<dataset id>``, a batch input ``DATASET_STORE/<org id>/batch/<uuid hex>.json``.
``app`` must be an installed product and ``task`` a slug: both are checked at every entry point (API, pages,
commands) and again by the job handlers, and ``core.storage.org_path`` refuses any result outside the
organisation's folder.
"""

import functools
import re
from pathlib import Path

from django.apps import apps
from django.conf import settings

from core.errors import InvalidInput
from core.storage import UnsafePath, org_path

TASK_PATTERN = r"^[a-z][a-z0-9_]{0,49}$"
_TASK = re.compile(TASK_PATTERN)
_BATCH_NAME = re.compile(r"^[0-9a-f]{32}\.json$")
PLATFORM_APP = "core"  # models the platform itself trains, outside any product


@functools.cache
def model_apps() -> tuple[str, ...]:
    """The products models can be trained for: the project's own top-level apps (the verticals, each a
    folder beside ``core``, read from Django's app registry so core names none of them) and ``core``."""
    root = Path(settings.BASE_DIR).resolve()
    products = {
        config.label
        for config in apps.get_app_configs()
        if "." not in config.name and Path(config.path).resolve().parent == root
    }
    return tuple(sorted(products | {PLATFORM_APP}))


def validate_app(app: object) -> str:
    if not isinstance(app, str) or app not in model_apps():
        raise InvalidInput(
            f"Unknown product; use one of {', '.join(model_apps())}.", details={"field": "app"}
        )
    return app


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
