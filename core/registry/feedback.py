"""Retrain from feedback: a product's corrections of a model's answers become its next training run.

Any product calls ``model_retrain_from_feedback`` with the (text, label) pairs its people corrected (the
chatbot's operators correcting intents in the inbox are the first user). The active model's own dataset is
the base: its rows, with every corrected text's old label replaced by the correction (a later correction
of the same text wins), are stored as a new version of that dataset with ``dataset_from_rows`` and a
training job is queued on it. The new model replaces the active one only through the registry's
promotion rule (it must beat it on held-out data).

``text``: how the product's models read a text now, applied to the base dataset's rows (a product whose
models came to read another form than the one the base was stored in: the finance monitor's web links as one
word), so that the new dataset is in one form and a correction still replaces the row it corrects.
"""

from collections.abc import Callable, Iterable
from typing import Any

from core.errors import Conflict
from core.registry import services as registry
from core.registry.models import Dataset
from core.registry.services.common import active_version


def model_retrain_from_feedback(
    *,
    organisation,
    app: str,
    task: str,
    feedback: Iterable[tuple[str, str]],
    source: str = "with-feedback",
    config: dict[str, Any] | None = None,
    created_by=None,
    text: Callable[[str], str] | None = None,
):
    """Queue training on the active ``app``/``task`` model's dataset merged with ``feedback``; the job.
    ``text``: see the module docstring (the feedback's texts are the product's to give in that form)."""
    version = active_version(organisation, app, task)
    if version is None or version.dataset_id is None:
        raise Conflict(f"There is no active {task} model trained on a dataset to improve.")
    corrections = dict(feedback)  # in order: the latest correction of a text wins
    if not corrections:
        raise Conflict("There is no feedback to train on yet.")
    dataset = Dataset.objects.for_org(organisation).filter(pk=version.dataset_id).first()
    if dataset is None:
        raise Conflict("The active model's dataset no longer exists.")
    rows = [row for split in registry.dataset_rows(dataset=dataset).values() for row in split]
    if text is not None:
        rows = [(text(row_text), label) for row_text, label in rows]
    kept = [(row_text, label) for row_text, label in rows if row_text not in corrections]
    new = registry.dataset_from_rows(
        organisation=organisation,
        name=dataset.name,
        task=dataset.task,
        rows=[*kept, *corrections.items()],
        source=source,
    )
    return registry.model_train_start(
        organisation=organisation,
        dataset_id=new.pk,
        app=app,
        task=task,
        config=config,
        created_by=created_by,
    )
