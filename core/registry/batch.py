"""Batch prediction of a whole file as an ``infer`` job, with a downloadable CSV result.

Input: CSV with a ``text`` column (and optionally ``label`` to score the model, and ``id``), JSONL
objects with the same keys, or plain text with one text per line. The file is checked and the quota
reserved before the job is queued; the worker writes the result next to the usage exports.
"""

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import InvalidInput
from core.jobs import services as jobs
from core.registry.services import classifier_version, predictor_for

MAX_ROWS = 100_000
MAX_TEXT_CHARS = 10_000
CHUNK = 256
ALLOWED = {"id", "text", "label"}


def _decode(data: bytes) -> str:
    if not data.strip():
        raise InvalidInput("The file is empty.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"The file is not UTF-8 (byte {exc.start} is invalid); save it as UTF-8.")


def _records(text: str, filename: str) -> list[dict[str, str]]:
    first = text.lstrip()[:1]
    if filename.endswith((".jsonl", ".ndjson")) or first == "{":
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"Line {n} is not valid JSON: {exc.msg}.")
                if not isinstance(obj, dict):
                    raise InvalidInput(f"Line {n} must be a JSON object with a 'text' field.")
                records.append({k: "" if v is None else str(v) for k, v in obj.items()})
        return records
    if filename.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        reader.fieldnames = [(f or "").strip().lower() for f in reader.fieldnames or []]
        return [dict(row) for row in reader]
    return [{"text": line} for line in text.splitlines() if line.strip()]


def _validate(records: list[dict[str, str]], labels: list[str]) -> list[dict[str, str]]:
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
    version = classifier_version(organisation=organisation, version_id=version_id, app=app, task=task)
    records = _validate(_records(_decode(data), filename.lower()), version.labels)
    billing.quota_check(organisation=organisation, meter=Meter.PREDICTIONS, quantity=len(records))
    folder = Path(settings.DATASET_STORE) / str(organisation.pk) / "batch"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(records))
    params = {"model_version": version.pk, "input": path.name, "rows": len(records)}
    return jobs.job_create(
        organisation=organisation,
        kind="ml.batch_predict",
        params=params,
        created_by=created_by,
        app=version.app,
    )


def batch_predict_handler(job, reporter) -> dict[str, Any]:
    org = job.organisation
    version = classifier_version(organisation=org, version_id=job.params["model_version"])
    source = Path(settings.DATASET_STORE) / str(org.pk) / "batch" / job.params["input"]
    records = json.loads(source.read_text())
    predictor = predictor_for(version=version)
    out_dir = Path(settings.VAR_DIR) / "exports" / str(org.pk)
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"predictions-job{job.pk}.csv"
    correct = scored = 0
    with (out_dir / name).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text", "label", "confidence", "gold", "probabilities"])
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            for record, p in zip(chunk, predictor.predict([r["text"] for r in chunk]), strict=True):
                gold = record.get("label") or ""
                scored, correct = scored + bool(gold), correct + (gold == p.label)
                writer.writerow(
                    [
                        record.get("id", ""),
                        record["text"],
                        p.label,
                        f"{p.probabilities[p.label]:.6f}",
                        gold,
                        json.dumps(p.probabilities),
                    ]
                )
            reporter.progress(min(start + CHUNK, len(records)) / len(records), f"{start + len(chunk)} rows")
    billing.usage_record(
        organisation=org,
        meter=Meter.PREDICTIONS,
        quantity=len(records),
        idempotency_key=f"batch:{job.pk}",
        enforce=False,
        metadata={"job": job.pk},
    )
    source.unlink(missing_ok=True)
    result: dict[str, Any] = {"rows": len(records), "file": name, "model_version": version.pk}
    if scored:
        result["accuracy"] = correct / scored
        result["scored_rows"] = scored
    return result
