"""Retrain from feedback: a product's corrections of a model's answers become its next training run.

Any product calls ``model_retrain_from_feedback`` with the (text, label) pairs its people corrected (the
chatbot's operators correcting intents in the inbox are the first user). The active model's own dataset is
the base: its rows, with every corrected text's old label replaced by the correction (a later correction
of the same text wins), are stored as a new version of that dataset with ``dataset_from_rows`` and a
training job is queued on it. The new model replaces the active one only through the registry's
promotion rule (it must beat it on held-out data).

Where the product's models of the task read texts in a form (``ModelTask.text_form``: the finance monitor's
web links as one word), the base dataset's rows and the feedback are compared in that form, and stored in
it: a correction replaces the row it corrects whether the base was stored before the product adopted the
form or after, and the feedback's texts are given as they came.
"""

from collections.abc import Callable, Iterable
from typing import Any

from core.errors import Conflict
from core.ml.textforms import in_form, text_form
from core.products import text_form_name
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
):
    """Queue training on the active ``app``/``task`` model's dataset merged with ``feedback``; the job."""
    version = active_version(organisation, app, task)
    if version is None or version.dataset_id is None:
        raise Conflict(f"There is no active {task} model trained on a dataset to improve.")
    form = text_form(text_form_name(app, task))
    corrections = dict(_formed(form, feedback))  # in order: the latest correction of a text wins
    if not corrections:
        raise Conflict("There is no feedback to train on yet.")
    dataset = Dataset.objects.for_org(organisation).filter(pk=version.dataset_id).first()
    if dataset is None:
        raise Conflict("The active model's dataset no longer exists.")
    rows = [row for split in registry.dataset_rows(dataset=dataset).values() for row in split]
    rows = _formed(form, rows)
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


def _formed(form: Callable[[str], str] | None, rows: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    rows = list(rows)
    return list(zip(in_form(form, [text for text, _ in rows]), [label for _, label in rows], strict=True))
