"""The one upload reader: CSV or JSON Lines bytes -> records with their lines, and what could not be read.

What belongs here: everything about reading an uploaded file that does not depend on what the file is for
(a training set, a batch to predict, answer templates, historical Q&A, the CLI's input): the byte-order
mark, the encoding, the format (by name, else by the first character), the size and row limits, physical
line numbers (a CSV record spanning lines is reported at its first line), over-long lines skipped before
they are decoded, broken CSV records and JSON lines rejected one by one with a reason and a detail, and the
header. What the columns mean, and whether a rejection refuses the file, is the caller's (``core.ml.datasets``
for training data; the batch, the chatbot's imports and the CLI through ``read_upload``). Plain Python.

Rejection reasons: ``line_too_long``, ``bad_encoding`` (invalid UTF-8 in the row, when the encoding is not
checked for the whole file), ``malformed`` (bad CSV, bad JSON), ``not_object`` (a JSON line that is not an
object). Whole-file problems raise ``UploadError`` with a ``code`` (``empty``, ``too_large``, ``utf16``,
``encoding``, ``archive``, ``json_array``, ``too_many_rows``, ``format``) so that a caller can phrase it in
its own words; ``message`` is a user-facing default.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from core.ml.errors import MLError

FORMATS = ("csv", "jsonl")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
SURROGATE = re.compile("[\udc80-\udcff]")  # undecodable bytes, kept by "surrogateescape"
_NON_SPACE = re.compile(rb"\S")


class UploadError(MLError):
    """The file as a whole cannot be read; ``message`` is user-facing, ``code`` says which problem."""

    def __init__(self, message: str, *, code: str = "", rejected=(), byte: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.byte = message, code, byte
        self.rejected = tuple(rejected)


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str  # line_too_long | bad_encoding | malformed | not_object, or a caller's own reason
    detail: str


@dataclass(frozen=True)
class ReadLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_rows: int = 200_000  # data rows in the file, rejected ones included
    max_line_bytes: int = 1_000_000


class _HasLimits(Protocol):
    @property
    def max_rows(self) -> int: ...
    @property
    def max_line_bytes(self) -> int: ...


@dataclass
class Context:
    """Collects rejections while reading; enforces ``max_rows`` as rows stream past."""

    limits: Any  # ReadLimits, core.ml.datasets.Limits: anything with max_rows and max_line_bytes
    error: type[UploadError] = UploadError
    rejected: dict[int, RejectedRow] = field(default_factory=dict)
    rows_seen: int = 0

    def count_row(self) -> None:
        self.rows_seen += 1
        if self.rows_seen > self.limits.max_rows:
            raise self.error(
                f"too many rows: the limit is {self.limits.max_rows} data rows per file", code="too_many_rows"
            )

    def reject(self, line: int, reason: str, detail: str, *, counted: bool = False) -> None:
        if line in self.rejected:  # a CSV record re-read after an unterminated quote
            return
        if not counted:
            self.count_row()
        self.rejected[line] = RejectedRow(line=line, reason=reason, detail=detail)


# --- bytes, lines, formats ------------------------------------------------------------------------


def content_start(data: bytes) -> int:
    """Where the text starts: after a UTF-8 byte-order mark, if there is one."""
    return len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0


def iter_lines(data: bytes, start: int, lineno: int) -> Iterator[tuple[int, int, int]]:
    """(line number, start, end) of each physical line, end including the newline; no copies."""
    while start < len(data):
        newline = data.find(b"\n", start)
        end = len(data) if newline == -1 else newline + 1
        yield lineno, start, end
        start, lineno = end, lineno + 1


def too_long_detail(size: int, limits: _HasLimits) -> str:
    return f"line is {size} bytes; the limit is {limits.max_line_bytes}"


def detect_format(data: bytes, start: int, filename: str | None, fmt: str | None) -> str:
    if fmt is not None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
        return fmt
    extension = os.path.splitext(filename or "")[1].lower()
    if extension in EXTENSIONS:
        return EXTENSIONS[extension]
    first = _NON_SPACE.search(data, start)
    return "jsonl" if first is not None and data[first.start()] == ord("{") else "csv"


def check_whole_file(data: bytes, start: int, fmt: str, error: type[UploadError] = UploadError) -> None:
    """Refuse what is not a text file of the format at all (UTF-16, a spreadsheet, a JSON array, nothing)."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise error("the file is UTF-16 encoded; save it as UTF-8", code="utf16")
    if data.startswith(b"PK\x03\x04"):
        raise error("the file is a spreadsheet or zip archive; export it as CSV (UTF-8)", code="archive")
    first = _NON_SPACE.search(data, start)
    if first is None:
        raise error("the file is empty", code="empty")
    if fmt == "jsonl" and data[first.start()] == ord("["):
        raise error(
            "the file is a JSON array; upload JSON Lines: one JSON object per line", code="json_array"
        )


def check_encoding(data: bytes, start: int, error: type[UploadError] = UploadError) -> None:
    """Refuse a file with any byte that is not UTF-8 (``byte`` is 1-based, after a byte-order mark)."""
    try:
        data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"the file is not UTF-8 text (byte {exc.start + 1} cannot be read); save it as UTF-8",
            code="encoding",
            byte=exc.start + 1,
        ) from None


# --- CSV ------------------------------------------------------------------------------------------


class _Unterminated(Exception):
    pass


class _CsvFeed:
    """Decoded physical lines for ``csv.reader``; over-long lines are rejected without decoding."""

    def __init__(self, data: bytes, start: int, lineno: int, ctx: Context) -> None:
        self.data, self.start, self.lineno, self.ctx = data, start, lineno, ctx
        self.new_record = True
        self.record_line = lineno
        self.restart = (start, lineno)  # where to resume if this record turns out unterminated
        self.record_bytes = 0

    def __iter__(self) -> Iterator[str]:
        limit = self.ctx.limits.max_line_bytes
        for lineno, start, end in iter_lines(self.data, self.start, self.lineno):
            if end - start > limit:
                self.ctx.reject(lineno, "line_too_long", too_long_detail(end - start, self.ctx.limits))
                continue
            if self.new_record:
                self.new_record, self.record_line, self.record_bytes = False, lineno, 0
                self.restart = (end, lineno + 1)
            self.record_bytes += end - start
            if self.record_bytes > limit:
                raise _Unterminated
            yield self.data[start:end].decode("utf-8", "surrogateescape")


def csv_records(
    data: bytes, start: int, ctx: Context, *, keep_blank: bool = False
) -> Iterator[tuple[int, list[str]]]:
    """CSV records as (first line, fields), blank ones only with ``keep_blank``; broken records go to
    ``ctx`` and are skipped. Undecodable bytes survive as surrogates (see ``SURROGATE``)."""
    feed = _CsvFeed(data, start, 1, ctx)
    reader = csv.reader(feed, strict=True)
    while True:
        feed.new_record = True
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, _Unterminated) as exc:
            message = str(exc)
            if isinstance(exc, _Unterminated) or message == "unexpected end of data":
                ctx.reject(feed.record_line, "malformed", "quoted field is never closed")
                feed = _CsvFeed(data, *feed.restart, ctx)
                reader = csv.reader(feed, strict=True)
            elif message.startswith("field larger than field limit"):
                ctx.reject(feed.record_line, "too_long", "a field is far over the text limit")
            else:
                ctx.reject(feed.record_line, "malformed", f"invalid CSV: {message}")
            continue
        if keep_blank or any(value.strip() for value in row):
            yield feed.record_line, row


# --- JSON Lines -----------------------------------------------------------------------------------


class NotAnObject(ValueError):
    pass


def parse_json_line(raw: bytes) -> dict[str, object]:
    """One JSON Lines object with its keys stripped and lower-cased; ValueError (NotAnObject) otherwise."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        raise ValueError("invalid JSON: nested too deeply")
    if not isinstance(obj, dict):
        raise NotAnObject(f"expected a JSON object, got {type(obj).__name__}")
    return {str(key).strip().lower(): value for key, value in obj.items()}


def jsonl_records(
    data: bytes, start: int, ctx: Context, *, keep_blank: bool = False, not_object: str = "not_object"
) -> Iterator[tuple[int, dict[str, object] | None]]:
    """Objects of a JSON Lines file as (line, object); a blank line yields None with ``keep_blank``.
    A line that is JSON but not an object is rejected with the reason ``not_object``."""
    for lineno, begin, end in iter_lines(data, start, 1):
        if end - begin > ctx.limits.max_line_bytes:
            ctx.reject(lineno, "line_too_long", too_long_detail(end - begin, ctx.limits))
            continue
        raw = data[begin:end]
        if not raw.strip():
            if keep_blank:
                yield lineno, None
            continue
        try:
            obj = parse_json_line(raw)
        except UnicodeDecodeError as exc:
            ctx.reject(lineno, "bad_encoding", f"invalid UTF-8 at byte {exc.start + 1} of the line")
            continue
        except NotAnObject as exc:
            ctx.reject(lineno, not_object, str(exc))
            continue
        except ValueError as exc:  # JSONDecodeError, int too large
            ctx.reject(lineno, "malformed", str(exc))
            continue
        yield lineno, obj


# --- the reader for callers that take records -----------------------------------------------------


@dataclass(frozen=True)
class Record:
    line: int  # 1-based physical line where the record starts
    values: dict[str, Any]  # CSV: header name -> str (None past the end of a short row); JSONL: the object
    extra: tuple[str, ...] = ()  # CSV values beyond the header


@dataclass(frozen=True)
class Upload:
    format: str  # csv | jsonl | lines
    columns: tuple[str, ...]  # the CSV header (stripped, lower-cased); ("text",) for lines; () for JSONL
    records: tuple[Record, ...]
    rejected: tuple[RejectedRow, ...]


def read_upload(
    data: bytes,
    *,
    filename: str | None = None,
    fmt: str | None = None,
    limits: ReadLimits = ReadLimits(),  # noqa: B008 - frozen, so a shared default is safe
    lines_ok: bool = False,
    keep_blank: bool = False,
) -> Upload:
    """Read a whole upload: UTF-8 (a byte-order mark is dropped; any other encoding refuses the file),
    CSV with a header or JSON Lines (by ``fmt``, else the name's extension, else ``{`` as the first
    character), or with ``lines_ok`` one text per line when the name has another extension. Blank records
    are skipped unless ``keep_blank`` (then a blank CSV row has every value "" and a blank JSON line ``{}``).
    """
    if len(data) > limits.max_bytes:
        raise UploadError(f"the file is {len(data)} bytes; the limit is {limits.max_bytes}", code="too_large")
    start = content_start(data)
    extension = os.path.splitext(filename or "")[1].lower()
    if fmt is None and lines_ok and extension not in EXTENSIONS:
        first = _NON_SPACE.search(data, start)
        fmt = "jsonl" if first is not None and data[first.start()] == ord("{") else "lines"
    if fmt not in (None, "lines"):
        fmt = detect_format(data, start, filename, fmt)
    fmt = fmt or detect_format(data, start, filename, None)
    check_whole_file(data, start, fmt if fmt != "lines" else "csv")
    check_encoding(data, start)
    ctx = Context(limits=limits)
    if fmt == "lines":
        return _lines(data, start, ctx, keep_blank)
    if fmt == "jsonl":
        records = []
        for line, obj in jsonl_records(data, start, ctx, keep_blank=keep_blank):
            ctx.count_row()
            records.append(Record(line, {} if obj is None else obj))
        return Upload("jsonl", (), tuple(records), _sorted(ctx))
    return _csv(data, start, ctx, keep_blank)


def _csv(data: bytes, start: int, ctx: Context, keep_blank: bool) -> Upload:
    rows = csv_records(data, start, ctx, keep_blank=keep_blank)
    header = next(rows, None)
    if ctx.rejected:  # the lines before the header (or it) could not be read
        first = min(ctx.rejected.values(), key=lambda r: r.line)
        raise UploadError(f"could not read the header on line {first.line}: {first.detail}", code="header")
    if header is None:
        raise UploadError("the file is empty", code="empty")
    columns = tuple(name.strip().lower() for name in header[1])
    records = []
    for line, values in rows:
        ctx.count_row()
        if keep_blank and not any(value.strip() for value in values) and len(values) <= 1:
            values = [""] * len(columns)  # a blank line is an empty row, kept in its place
        padded = dict(zip(columns, [*values, *[None] * (len(columns) - len(values))], strict=False))
        records.append(Record(line, padded, tuple(values[len(columns) :])))
    return Upload("csv", columns, tuple(records), _sorted(ctx))


def _lines(data: bytes, start: int, ctx: Context, keep_blank: bool) -> Upload:
    records = []
    for lineno, begin, end in iter_lines(data, start, 1):
        if end - begin > ctx.limits.max_line_bytes:
            ctx.reject(lineno, "line_too_long", too_long_detail(end - begin, ctx.limits))
            continue
        text = data[begin:end].decode("utf-8").rstrip("\r\n")
        if text.strip() or keep_blank:
            ctx.count_row()
            records.append(Record(lineno, {"text": text}))
    return Upload("lines", ("text",), tuple(records), _sorted(ctx))


def _sorted(ctx: Context) -> tuple[RejectedRow, ...]:
    return tuple(sorted(ctx.rejected.values(), key=lambda row: row.line))
