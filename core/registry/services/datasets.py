"""Dataset uploads: validated, scrubbed, split and stored as a new version of a named dataset."""

import json
from collections.abc import Iterable, Sequence

from django.db import transaction

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import InvalidInput
from core.ml.datasets import (
    TASK_COLUMNS,
    DatasetError,
    fingerprint_rows,
    parse_dataset,
    parse_rows,
    report_csv,
    stratified_split,
)
from core.registry.models import Dataset
from core.registry.paths import dataset_dir
from core.registry.services.common import next_version
from core.storage import read_org_file, write_org_file

DEFAULT_SPLIT = "80/10/10"  # train/validation/test percentages of an upload
DEFAULT_SPLIT_WITH_TEST_FILE = "90/10/0"  # a given test file is the test split


def split_fractions(split: str) -> tuple[float, float]:
    """``"80/10/10"`` (train/validation/test percentages) -> (validation, test) fractions.

    ``"100/0/0"`` trains on every row (the model is then evaluated on its training rows).
    """
    parts = str(split).strip().split("/")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or any(v < 0 for v in values) or abs(sum(values) - 100) > 1e-6 or values[0] <= 0:
        raise InvalidInput(
            f"A split is three percentages train/validation/test summing to 100, train above 0 "
            f"(e.g. {DEFAULT_SPLIT}); got '{split}'.",
            details={"field": "split"},
        )
    return values[1] / 100, values[2] / 100


def _parse(*, rows=None, **kwargs):
    try:
        return parse_dataset(**kwargs) if rows is None else parse_rows(rows=rows, **kwargs)
    except DatasetError as exc:
        raise InvalidInput(str(exc), details={"rejected": [r.__dict__ for r in exc.rejected[:20]]})


def dataset_upload(
    *,
    organisation,
    name: str,
    task: str,
    data: bytes,
    filename: str | None = None,
    columns: tuple[str, str] | None = None,
    split: str | None = None,
    test_data: bytes | None = None,
    test_filename: str | None = None,
) -> Dataset:
    """Validate, scrub, de-duplicate and split an upload, then store it as a new version of ``name``.

    ``columns`` names the file's two columns for the task (e.g. ``("utterance", "intent")``; default: the
    task's own names, exactly). ``split`` is ``"train/validation/test"`` percentages (default 80/10/10).
    ``test_data`` is the caller's own held-out file (same columns): it becomes the test split, the upload is
    split into train and validation only (default 90/10/0), and upload rows whose text is also in the test
    file are left out of training. Test rows whose label is not in the upload are rejected.
    """
    name = _checked(name, task)
    validation, test = split_fractions(
        split or (DEFAULT_SPLIT if test_data is None else DEFAULT_SPLIT_WITH_TEST_FILE)
    )
    if test_data is not None and test > 0:
        raise InvalidInput(
            "A test file is the test split: give a split without a test part (e.g. 90/10/0).",
            details={"field": "split"},
        )
    parsed = _parse(data=data, task=task, filename=filename, columns=columns)
    test_parsed = None
    if test_data is not None:
        test_parsed = _parse(
            data=test_data,
            task=task,
            filename=test_filename,
            columns=columns,
            allowed_labels=parsed.labels if task == "classification" else None,
        )
    return _store(
        organisation=organisation,
        name=name,
        task=task,
        parsed=parsed,
        test_parsed=test_parsed,
        fractions=(validation, test),
        source=filename or "",
    )


def dataset_from_rows(
    *,
    organisation,
    name: str,
    task: str,
    rows: Iterable[Sequence[str]],
    source: str = "",
    split: str | None = None,
    shipped: bool = False,
) -> Dataset:
    """A new version of ``name`` from rows a product holds (``(text, label)`` or ``(query, positive)``),
    under the same rules as an upload (validated, scrubbed, de-duplicated, split, quota-checked) and with
    no file in between; ``source`` is what the datasets page shows as its origin. ``shipped``: rows the
    platform ships (a product's default training set), neither checked against nor counted in the
    organisation's stored records."""
    name = _checked(name, task)
    fractions = split_fractions(split or DEFAULT_SPLIT)
    parsed = _parse(rows=rows, task=task)
    return _store(
        organisation=organisation,
        name=name,
        task=task,
        parsed=parsed,
        test_parsed=None,
        fractions=fractions,
        source=source,
        shipped=shipped,
    )


def _checked(name: str, task: str) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("A dataset needs a name.", details={"field": "name"})
    if task not in TASK_COLUMNS:
        raise InvalidInput(
            f"Unknown task '{task}'; use one of {', '.join(TASK_COLUMNS)}.", details={"field": "task"}
        )
    return name


def _store(
    *, organisation, name, task, parsed, test_parsed, fractions, source: str, shipped: bool = False
) -> Dataset:
    """Split, charge and write a parsed dataset (and a caller's parsed test file) as the next version."""
    validation, test = fractions
    held_out = test_parsed.rows if test_parsed is not None else ()
    seen = {text.casefold() for text, _ in held_out}
    train_rows = [row for row in parsed.rows if row[0].casefold() not in seen]
    overlap = len(parsed.rows) - len(train_rows)
    split_ = stratified_split(
        rows=train_rows, validation=validation, test=test, stratify=task == "classification"
    )
    all_rows = [*train_rows, *held_out]
    if not shipped:
        billing.quota_check(organisation=organisation, meter=Meter.STORED_RECORDS, quantity=len(all_rows))
    rejected = len(parsed.rejected) + (len(test_parsed.rejected) if test_parsed else 0)
    counts = {
        "train": len(split_.train),
        "validation": len(split_.validation),
        "test": len(split_.test) + len(held_out),
        "scrubbed": len(parsed.scrubbed) + (len(test_parsed.scrubbed) if test_parsed else 0),
    }
    if test_parsed is not None:
        counts["test_file"], counts["overlap_dropped"] = len(held_out), overlap
    with transaction.atomic():
        version = next_version(Dataset.objects.for_org(organisation).filter(name=name))
        dataset = Dataset.all_tenants.create(
            organisation=organisation,
            name=name,
            task=task,
            version=version,
            fingerprint=parsed.fingerprint if test_parsed is None else fingerprint_rows(all_rows),
            row_count=len(all_rows),
            rejected_count=rejected,
            labels=list(parsed.labels),
            split_counts=counts,
            path="",
            source_filename=source[:255],
            shipped=shipped,
        )
        folder = dataset_dir(organisation_id=organisation.pk, dataset_id=dataset.pk)
        folder.mkdir(parents=True, exist_ok=True)
        rows = {"train": split_.train, "validation": split_.validation, "test": (*split_.test, *held_out)}
        payload = json.dumps({k: [list(r) for r in v] for k, v in rows.items()}).encode()
        write_org_file(folder / "rows.json", organisation.pk, payload)
        report = report_csv(parsed)
        if test_parsed is not None and (test_parsed.rejected or test_parsed.scrubbed):
            report += "test file\r\n" + report_csv(test_parsed)  # its own header and line numbers
        write_org_file(folder / "report.csv", organisation.pk, report.encode())
        dataset.path, dataset.report_path = str(folder / "rows.json"), str(folder / "report.csv")
        dataset.save(update_fields=["path", "report_path", "updated_at"])
    return dataset


def dataset_rows(*, dataset: Dataset) -> dict[str, list[tuple[str, str]]]:
    """The stored split, read from the dataset's own folder (built from its ids, not from a stored string)."""
    folder = dataset_dir(organisation_id=dataset.organisation_id, dataset_id=dataset.pk)
    payload = json.loads(read_org_file(folder / "rows.json", dataset.organisation_id))
    return {split: [(a, b) for a, b in rows] for split, rows in payload.items()}
