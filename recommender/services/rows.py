"""What item and event rows from the API and from uploads share: per-row checking with a reason, and the
upload reader (``core.ml.uploads``, the platform's one) turned into dictionaries with their line numbers."""

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from core.errors import InvalidInput
from core.ml.uploads import ReadLimits, UploadError, read_upload

MAX_BATCH = 1_000  # rows per API call
MAX_UPLOAD_ROWS = 200_000
FUTURE_SLACK_S = 300  # clocks differ: an event up to five minutes ahead is accepted
# Times outside this range are refused: PostgreSQL stores 0001-01-01T00:00:00+14:00 as a year-1-BC timestamp
# that Python (psycopg) cannot read back, so one such row would break every read of the organisation's items
# or events (lists, serving, training). No shop has events before 1900 or items expiring after 9998.
EARLIEST_TIME = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(9999, 1, 1, tzinfo=UTC)
# Ids must be addressable by the API: the path segment of items/{id}/ cannot hold "/", and the items= and
# exclude= lists are separated by ",". Control characters (NUL among them) cannot be stored or sent.
ID_FORBIDDEN = re.compile(r"[/,\x00-\x1f\x7f]")


class RowError(ValueError):
    """One row cannot be used; the message says why (shown beside its index or line)."""


@dataclass
class Rejection:
    index: int  # position in the batch (0-based), or the file's line number for uploads
    reason: str


@dataclass
class IngestResult:
    created: int = 0
    updated: int = 0
    existing: int = 0  # events already stored under the same id (not counted twice)
    rejected: list[Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created,
            "updated": self.updated,
            "existing": self.existing,
            "rejected": [{"index": r.index, "reason": r.reason} for r in self.rejected],
        }


def text_value(row: dict[str, Any], name: str, *, required: bool, limit: int) -> str:
    value = row.get(name)
    if value is None or value == "":
        if required:
            raise RowError(f"{name} is missing")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise RowError(f"{name} must be a string")
    if "\x00" in value:
        raise RowError(f"{name} contains a NUL character (\\x00)")
    value = value.strip()
    if required and not value:
        raise RowError(f"{name} is empty")
    if len(value) > limit:
        raise RowError(f"{name} has {len(value)} characters; the limit is {limit}")
    return value


def id_value(row: dict[str, Any], name: str) -> str:
    """An item id (or an event's item reference): required, at most 200 characters, and addressable by the
    API (no "/", "," or control characters, and not "." or "..", which URLs resolve away)."""
    value = text_value(row, name, required=True, limit=200)
    bad = ID_FORBIDDEN.search(value)
    if bad is not None:
        raise RowError(
            f"{name} {value[:60]!r} contains {bad.group()!r}: ids may not contain '/', ',' or control "
            "characters (the API could not address the item)"
        )
    if value in (".", ".."):
        raise RowError(f"{name} {value!r} is not a usable id (the API could not address the item)")
    return value


def time_value(row: dict[str, Any], name: str, *, required: bool, not_after_now: bool) -> datetime | None:
    raw = row.get(name)
    if raw is None or raw == "":
        if required:
            raise RowError(f"{name} is missing")
        return None
    try:
        parsed = parse_datetime(raw) if isinstance(raw, str) else None
    except ValueError:  # well formed but not a date (2026-02-30, an offset over 24 hours)
        parsed = None
    if parsed is None:
        raise RowError(f"{name} {str(raw)[:40]!r} is not an ISO 8601 date and time")
    if parsed.tzinfo is None:
        raise RowError(f"{name} needs a time zone (for example 2026-12-02T09:30:00Z)")
    if not EARLIEST_TIME <= parsed < LATEST_TIME:
        raise RowError(f"{name} {raw} is out of range: give a time from 1900-01-01 to 9998-12-31 (UTC)")
    if not_after_now and (parsed - timezone.now()).total_seconds() > FUTURE_SLACK_S:
        raise RowError(f"{name} {raw} is in the future")
    return parsed


def write_lock(organisation, what: str) -> None:
    """On PostgreSQL, inside a write's transaction: an advisory lock on the organisation's ``what``
    ("catalogue", "events"), held to the commit, so that concurrent batches check their stock quota one after
    the other, each seeing what the previous one stored (without it, ten parallel batches of 10 items against
    a limit of 30 stored 62). SQLite (the embedded default) serialises them already: its transactions are
    IMMEDIATE."""
    if connection.vendor != "postgresql":
        return
    data = f"recommender.{what}:".encode() + int(organisation.pk).to_bytes(8, "little", signed=True)
    key = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def upload_rows(*, data: bytes, filename: str) -> tuple[list[tuple[int, dict[str, Any]]], list[Rejection]]:
    """(line, row) for each record of a CSV/JSONL upload, and the lines the reader itself rejected."""
    try:
        upload = read_upload(data, filename=filename, limits=ReadLimits(max_rows=MAX_UPLOAD_ROWS))
    except UploadError as exc:
        raise InvalidInput(f"The file cannot be read: {exc.message}", details={"field": "file"})
    rejected = [Rejection(r.line, f"{r.reason}: {r.detail}") for r in upload.rejected]
    rows = []
    for record in upload.records:
        if record.extra:
            rejected.append(Rejection(record.line, "more values than columns"))
            continue
        rows.append((record.line, {k: v for k, v in record.values.items() if v is not None}))
    return rows, rejected
