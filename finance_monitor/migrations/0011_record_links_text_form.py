"""Versions of the monitor's topic and sentiment models trained on texts with each web link as the word "link"
before that form was recorded with a version (2026-12-07: the default models' rows and the retrain with
corrections were put in the form by the monitor itself) have no ``text_form`` in their manifest, and would now
read texts as given: links they never saw in training. Each such version, recognised by its dataset (no web
link in any row, the word "link" in some), gets the form recorded in its manifest file and row
(``core.registry.services.common.artifact_text_form_record``), and so reads texts as it was trained to.
A version trained before 2026-12-07 (its rows hold raw links) or on an organisation's own links-free set is
left reading texts as given. A version whose files or dataset are gone is left as it is."""

import logging
import re

from django.db import migrations

log = logging.getLogger(__name__)

FORM = "links-as-word"  # finance_monitor.links.LINKS_AS_WORD's name, as stored
TASKS = ("topic", "sentiment")
RAW_LINK = re.compile(r"https?://")
LINK_WORD = re.compile(r"\blink\b")


def trained_in_form(rows: list[tuple[str, str]]) -> bool:
    """Whether a dataset's rows are in the links-as-word form: no raw link left, the word "link" present."""
    texts = [text for text, _ in rows]
    return not any(RAW_LINK.search(t) for t in texts) and any(LINK_WORD.search(t) for t in texts)


def record(apps, schema_editor):
    from core.errors import TrellisError
    from core.registry.services.common import artifact_text_form_record
    from core.registry.services.datasets import dataset_rows

    ModelVersion = apps.get_model("registry", "ModelVersion")
    Dataset = apps.get_model("registry", "Dataset")
    versions = ModelVersion._default_manager.filter(
        app="finance_monitor", task__in=TASKS, kind="classifier", dataset__isnull=False
    )
    for version in versions.iterator():
        hyperparameters = (version.manifest or {}).get("hyperparameters")
        if not isinstance(hyperparameters, dict) or "text_form" in hyperparameters:
            continue
        dataset = Dataset._default_manager.filter(pk=version.dataset_id).first()
        try:
            rows = (
                [row for split in dataset_rows(dataset=dataset).values() for row in split] if dataset else []
            )
            if not trained_in_form(rows):
                continue
            version.manifest = artifact_text_form_record(
                directory=version.artifact_path, organisation_id=version.organisation_id, name=FORM
            )
        except (
            OSError,
            ValueError,
            KeyError,
            TrellisError,
        ) as exc:  # files gone or unreadable: left as it is
            log.warning("Version %s: its text form was not recorded (%s).", version.pk, exc)
            continue
        version.save(update_fields=["manifest"])


class Migration(migrations.Migration):
    dependencies = [
        ("finance_monitor", "0010_mask_delivery_errors"),
        ("registry", "0003_modelversion_kind"),
    ]

    operations = [
        migrations.RunPython(record, migrations.RunPython.noop),
    ]
