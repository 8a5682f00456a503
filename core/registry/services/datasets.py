"""Dataset uploads: validated, scrubbed, split and stored as a new version of a named dataset."""

import json

from django.db import transaction

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import InvalidInput
from core.registry.models import Dataset
from core.registry.paths import dataset_dir
from core.registry.services.common import next_version


def dataset_upload(
    *, organisation, name: str, task: str, data: bytes, filename: str | None = None
) -> Dataset:
    """Validate, scrub, de-duplicate and split an upload, then store it as a new version of ``name``."""
    from core.ml.datasets import TASK_COLUMNS, DatasetError, parse_dataset, report_csv, stratified_split

    name = (name or "").strip()
    if not name:
        raise InvalidInput("A dataset needs a name.", details={"field": "name"})
    if task not in TASK_COLUMNS:
        raise InvalidInput(
            f"Unknown task '{task}'; use one of {', '.join(TASK_COLUMNS)}.", details={"field": "task"}
        )
    try:
        parsed = parse_dataset(data=data, task=task, filename=filename)
        split = stratified_split(rows=parsed.rows, stratify=task == "classification")
    except DatasetError as exc:
        raise InvalidInput(str(exc), details={"rejected": [r.__dict__ for r in exc.rejected[:20]]})
    billing.quota_check(organisation=organisation, meter=Meter.STORED_RECORDS, quantity=len(parsed.rows))
    with transaction.atomic():
        version = next_version(Dataset.objects.for_org(organisation).filter(name=name))
        dataset = Dataset.all_tenants.create(
            organisation=organisation,
            name=name,
            task=task,
            version=version,
            fingerprint=parsed.fingerprint,
            row_count=len(parsed.rows),
            rejected_count=len(parsed.rejected),
            labels=list(parsed.labels),
            split_counts={
                "train": len(split.train),
                "validation": len(split.validation),
                "test": len(split.test),
                "scrubbed": len(parsed.scrubbed),
            },
            path="",
            source_filename=(filename or "")[:255],
        )
        folder = dataset_dir(organisation_id=organisation.pk, dataset_id=dataset.pk)
        folder.mkdir(parents=True, exist_ok=True)
        rows = {"train": split.train, "validation": split.validation, "test": split.test}
        (folder / "rows.json").write_text(json.dumps({k: [list(r) for r in v] for k, v in rows.items()}))
        (folder / "report.csv").write_text(report_csv(parsed))
        dataset.path, dataset.report_path = str(folder / "rows.json"), str(folder / "report.csv")
        dataset.save(update_fields=["path", "report_path", "updated_at"])
    return dataset


def dataset_rows(*, dataset: Dataset) -> dict[str, list[tuple[str, str]]]:
    """The stored split, read from the dataset's own folder (built from its ids, not from a stored string)."""
    folder = dataset_dir(organisation_id=dataset.organisation_id, dataset_id=dataset.pk)
    payload = json.loads((folder / "rows.json").read_text())
    return {split: [(a, b) for a, b in rows] for split, rows in payload.items()}
