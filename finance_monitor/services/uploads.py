"""CSV / JSONL upload of documents, with per-row rejections and their reasons.

A small reader of the product's own until the core upload reader (issue 9, item 5) lands; it then moves
there. Columns / keys: ``text`` (required), ``title``, ``url``, ``author``, ``language``, ``published_at``
(ISO 8601 with a time zone), ``id`` (the client's id: a re-upload creates nothing twice).

A file is stored in one transaction: over the ``documents_ingested`` quota (402) none of its rows is kept.
"""

import csv
import io
import json
from dataclasses import dataclass, field

from django.db import transaction
from django.utils.dateparse import parse_datetime

from core.errors import InvalidInput
from finance_monitor.models import SourceKind
from finance_monitor.services import documents as docs

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_ROWS = 100_000
COLUMNS = {"text", "title", "url", "author", "language", "published_at", "id", "client_id"}


@dataclass
class Rejection:
    line: int
    reason: str


@dataclass
class UploadResult:
    rows: int = 0
    created: int = 0
    existing: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)


def parse_time(value: str):
    parsed = parse_datetime(value)
    if parsed is None:
        raise ValueError(f"published_at '{value[:40]}' is not an ISO 8601 date and time")
    if parsed.tzinfo is None:
        raise ValueError("published_at needs a time zone (for example 2026-12-02T09:30:00Z)")
    if not docs.time_in_range(parsed):
        raise ValueError(f"published_at '{value[:40]}' is out of range ({docs.TIME_RANGE})")
    return parsed


def _rows(data: bytes, filename: str):
    """(line number, mapping or an error string) for every row of the file."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"The file is not UTF-8 (byte {exc.start}).")
    if filename.lower().endswith((".jsonl", ".ndjson")):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"not JSON ({exc.msg})"
                continue
            except RecursionError:
                yield number, "not JSON we read (nested too deeply)"
                continue
            yield number, row if isinstance(row, dict) else "not a JSON object"
        return
    if not filename.lower().endswith(".csv"):
        raise InvalidInput("Upload a .csv or .jsonl file.")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = set(reader.fieldnames or [])
    if "text" not in header:
        raise InvalidInput("The CSV needs a 'text' column.")
    unknown = sorted(header - COLUMNS)
    if unknown:
        raise InvalidInput(f"Unknown columns: {', '.join(unknown)}.")
    try:
        for row in reader:
            if None in row:
                yield reader.line_num, "more values than columns"
                continue
            yield reader.line_num, row
    except csv.Error as exc:
        raise InvalidInput(f"The CSV cannot be read at line {reader.line_num}: {exc}.")


def documents_upload(*, organisation, data: bytes, filename: str, source_name: str = "") -> UploadResult:
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput(f"The file is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB.")
    if not data.strip():
        raise InvalidInput("The file is empty.")
    source = docs.source_for(
        organisation=organisation, kind=SourceKind.UPLOAD, name=(source_name or "Uploads")[:120]
    )
    result = UploadResult()
    batch: list[tuple[int, docs.DocumentIn]] = []

    def flush() -> None:
        outcome = docs.documents_ingest(organisation=organisation, items=[i for _, i in batch], source=source)
        for o in outcome.outcomes:
            if o.status == "created":
                result.created += 1
            elif o.status == "existing":
                result.existing += 1
            elif o.status == "duplicate":
                result.duplicates += 1
            else:
                result.rejected.append(Rejection(batch[o.index][0], o.reason))
        batch.clear()

    with transaction.atomic():  # all or nothing: a file that passes the documents quota stores nothing
        _read_into(result, batch, flush, data, filename)
    result.rejected.sort(key=lambda r: r.line)
    return result


def _read_into(result: UploadResult, batch: list, flush, data: bytes, filename: str) -> None:
    for line, row in _rows(data, filename):
        result.rows += 1
        if result.rows > MAX_ROWS:
            raise InvalidInput(f"The file has more than {MAX_ROWS} rows.")
        if isinstance(row, str):
            result.rejected.append(Rejection(line, row))
            continue
        bad = [k for k, v in row.items() if v is not None and not isinstance(v, str)]
        if bad:
            result.rejected.append(Rejection(line, f"{', '.join(sorted(bad))} must be text"))
            continue
        try:
            item = docs.document_in_from_mapping(row, parse_time=parse_time)
        except ValueError as exc:
            result.rejected.append(Rejection(line, str(exc)))
            continue
        batch.append((line, item))
        if len(batch) == docs.MAX_BATCH:
            flush()
    if batch:
        flush()
