"""Batch prediction of a whole file as an ``infer`` job, with a downloadable CSV result.

Input: CSV with a ``text`` column (and optionally ``label`` to score the model, and ``id``), JSONL
objects with the same keys, or plain text with one text per line. The file is checked and its predictions
charged before the job is queued (given back if it fails); the worker reads only the input file the start
wrote (a generated name in the organisation's batch folder, never a path from the job's parameters) and
writes the result next to the usage exports.
"""

import csv
import json
import logging
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from django.db import transaction

from core.billing import services as billing
from core.billing.models import Meter, UsageEvent
from core.errors import InvalidInput, QuotaExceeded
from core.jobs import services as jobs
from core.ml.spreadsheet import csv_cell
from core.ml.uploads import ReadLimits, UploadError, read_upload
from core.registry.kinds import kind_of
from core.registry.paths import batch_file, validate_id
from core.registry.services import classifier_version, predictor_for
from core.storage import UnsafePath, export_path, read_org_file, write_org_file

log = logging.getLogger(__name__)

MAX_ROWS = 100_000
MAX_TEXT_CHARS = 10_000
CHUNK = 256
ALLOWED = {"id", "text", "label"}


def _records(data: bytes, filename: str) -> list[dict[str, Any]]:
    """The file's records through the one upload reader (``core.ml.uploads``); any unreadable row refuses
    the file, since a batch's output has one row per input row."""
    if not data.strip():
        raise InvalidInput("The file is empty.")
    try:
        upload = read_upload(data, filename=filename, lines_ok=True, limits=ReadLimits(max_rows=MAX_ROWS))
    except UploadError as exc:
        raise InvalidInput(_file_problem(exc)) from None
    if upload.rejected:
        first = upload.rejected[0]
        if first.reason == "not_object":
            raise InvalidInput(f"Line {first.line} must be a JSON object with a 'text' field.")
        what = "is not valid JSON" if upload.format == "jsonl" else "cannot be read"
        raise InvalidInput(f"Line {first.line} {what}: {first.detail}.")
    if upload.format != "jsonl":
        return [{**r.values, None: list(r.extra)} if r.extra else r.values for r in upload.records]
    records = []
    for record in upload.records:
        bad = sorted(k for k in ("id", "text", "label") if isinstance(record.values.get(k), dict | list))
        if bad:
            raise InvalidInput(f"Line {record.line}: '{bad[0]}' must be a string or a number.")
        records.append({k: "" if v is None else str(v) for k, v in record.values.items()})
    return records


def _file_problem(exc: UploadError) -> str:
    if exc.code == "encoding":
        return f"The file is not UTF-8 (byte {exc.byte} is invalid); save it as UTF-8."
    if exc.code == "utf16":
        return "The file is UTF-16 encoded, not UTF-8; save it as UTF-8."
    if exc.code == "too_many_rows":
        return f"The file has more than {MAX_ROWS} rows; the limit is {MAX_ROWS} per batch."
    return exc.message[:1].upper() + exc.message[1:] + "."


def _validate(records: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    if not records:
        raise InvalidInput("The file has no rows.")
    if len(records) > MAX_ROWS:
        raise InvalidInput(f"The file has {len(records)} rows; the limit is {MAX_ROWS} per batch.")
    extra = sorted({k for r in records for k in r if k is not None} - ALLOWED)
    if extra or any(None in r for r in records):
        raise InvalidInput(f"Unexpected columns {extra or ['(unnamed)']}; allowed: id, text, label.")
    for n, record in enumerate(records, start=1):
        text = (record.get("text") or "").strip()
        if not text:
            raise InvalidInput(f"Row {n} has no text (a 'text' column or field is required).")
        if len(text) > MAX_TEXT_CHARS:
            raise InvalidInput(f"Row {n} is {len(text)} characters; the limit is {MAX_TEXT_CHARS}.")
    unknown = sorted({r["label"] for r in records if r.get("label")} - set(labels))
    if unknown:
        raise InvalidInput(
            f"Labels not in the model's label map: {', '.join(unknown[:10])}. "
            f"Known: {', '.join(labels[:20])}.",
            details={"unknown_labels": unknown[:100]},
        )
    return records


def batch_predict_start(
    *,
    organisation,
    data: bytes,
    filename: str = "",
    version_id: int | None = None,
    app: str = "",
    task: str = "",
    created_by=None,
):
    """Check the file, take its predictions from the quota and queue the job, all or nothing.

    The predictions are recorded when the job is created, in the same transaction (the counter's conditional
    UPDATE is the quota check), so two batches cannot both pass on the last of the quota and a batch never
    runs past it; a job that fails or is cancelled gives them back (``batch_predict_release``).
    """
    version = classifier_version(organisation=organisation, version_id=version_id, app=app, task=task)
    records = _validate(_records(data, filename.lower()), version.labels)
    with _batch_quota_message(len(records)):
        billing.quota_check(organisation=organisation, meter=Meter.PREDICTIONS, quantity=len(records))
    path = batch_file(organisation_id=organisation.pk, name=f"{uuid.uuid4().hex}.json")
    params = {"model_version": version.pk, "input": path.name, "rows": len(records)}
    try:
        with transaction.atomic(), _batch_quota_message(len(records)):
            job = jobs.job_create(
                organisation=organisation,
                kind="ml.batch_predict",
                params=params,
                created_by=created_by,
                app=version.app,
            )
            billing.usage_record(
                organisation=organisation,
                meter=Meter.PREDICTIONS,
                quantity=len(records),
                idempotency_key=_charge_key(job),
                metadata={"job": job.pk, "model_version": version.pk},
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            # before commit: the worker starts after it
            write_org_file(path, organisation.pk, json.dumps(records).encode())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return job


@contextmanager
def _batch_quota_message(rows: int):
    """Say how many rows the batch has and how many predictions remain, rather than "used up"."""
    try:
        yield
    except QuotaExceeded as exc:
        if exc.limit <= 0:  # a cancelled subscription or an ended trial: its own reason stands
            raise
        remaining = max(0, int(exc.limit - exc.used))
        raise QuotaExceeded(
            meter=exc.meter,
            limit=exc.limit,
            used=exc.used,
            period=exc.period,
            requested=rows,
            reason=f"This batch has {rows} rows but only {remaining} of your plan's {exc.limit} predictions "
            f"remain for {exc.period}; send a smaller file or upgrade the plan.",
        ) from None


def _charge_key(job) -> str:
    return f"batch:{job.pk}"


def batch_predict_release(job) -> None:
    """Give back the predictions a batch was charged at its start, once it ended without succeeding, and
    delete its input (a batch cancelled before a worker took it never reaches the handler that does)."""
    with suppress(UnsafePath):
        batch_file(organisation_id=job.organisation_id, name=(job.params or {}).get("input")).unlink(
            missing_ok=True
        )
    charge = UsageEvent.objects.for_org(job.organisation).filter(idempotency_key=_charge_key(job)).first()
    if charge is None or charge.quantity <= 0:
        return
    billing.usage_record(
        organisation=job.organisation,
        meter=Meter.PREDICTIONS,
        quantity=-charge.quantity,
        idempotency_key=f"batch-refund:{job.pk}",
        enforce=False,
        metadata={"job": job.pk, "refund": True},
    )


def _load_input(job, name: object) -> tuple[Path, list[dict[str, str]]]:
    """Only the file ``batch_predict_start`` wrote: a generated name in the organisation's batch folder."""
    source = batch_file(organisation_id=job.organisation_id, name=name)
    try:
        records = json.loads(read_org_file(source, job.organisation_id))
    except (FileNotFoundError, json.JSONDecodeError):
        log.warning("batch job %s: input %s is missing or unreadable", job.pk, source)
        raise InvalidInput("The batch's input file is gone; start the batch again.") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "text" in r for r in records):
        raise InvalidInput("The batch's input file is damaged; start the batch again.")
    return source, records


def batch_predict_handler(job, reporter) -> dict[str, Any]:
    params = job.params if isinstance(job.params, dict) else {}
    version_id = validate_id(params.get("model_version"), "model_version")
    source, records = _load_input(job, params.get("input"))
    try:
        return _predict_file(job, reporter, version_id, records)
    finally:  # the checked input, and only it: done with either way (a failed job gives its rows back)
        source.unlink(missing_ok=True)


def _predict_file(job, reporter, version_id: int, records: list[dict[str, str]]) -> dict[str, Any]:
    org = job.organisation
    version = classifier_version(organisation=org, version_id=version_id)
    kind, predictor = kind_of(version), predictor_for(version=version)
    name = f"predictions-job{job.pk}.csv"
    out = export_path(org.pk, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    correct = scored = 0
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label", "confidence", "gold", "probabilities"])
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            predictions = kind.run(model=predictor, texts=[r["text"] for r in chunk])
            for record, p in zip(chunk, predictions, strict=True):
                gold = record.get("label") or ""
                scored, correct = scored + bool(gold), correct + (gold == p.label)
                writer.writerow(
                    [
                        csv_cell(record.get("id", "")),  # tenant data, often written by the public
                        csv_cell(record["text"]),
                        csv_cell(p.label),
                        f"{p.probabilities[p.label]:.6f}",
                        csv_cell(gold),
                        json.dumps(p.probabilities),
                    ]
                )
            reporter.progress(min(start + CHUNK, len(records)) / len(records), f"{start + len(chunk)} rows")
    billing.usage_record(  # charged at the start; this only covers a job queued before that was so
        organisation=org,
        meter=Meter.PREDICTIONS,
        quantity=len(records),
        idempotency_key=_charge_key(job),
        enforce=False,
        metadata={"job": job.pk},
    )
    result: dict[str, Any] = {"rows": len(records), "file": name, "model_version": version.pk}
    if scored:
        result["accuracy"] = correct / scored
        result["scored_rows"] = scored
    return result
