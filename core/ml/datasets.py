"""Tenant training data: parse, validate, scrub, de-duplicate, split and fingerprint an upload.

What belongs here: turning the raw bytes of an uploaded CSV or JSON Lines file into accepted rows plus a
row-by-row account of everything refused or altered. Plain Python (stdlib + numpy at most); it never
reads settings, the ORM or a request. A service calls ``parse_dataset`` and translates ``DatasetError``
(a whole-file problem, user-facing message) into the platform's error vocabulary.

Rules, in the order they are applied to each data row:

1. parse: ``line_too_long`` (a physical line over ``Limits.max_line_bytes``, skipped before it is decoded
   or parsed), ``bad_encoding`` (invalid UTF-8 in the row), ``malformed`` (bad JSON, wrong field count,
   unterminated quote);
2. ``empty_text`` / ``empty_label`` after whitespace normalisation (NFC, control characters dropped,
   runs of whitespace collapsed to one space, stripped);
3. ``too_long``: any column over ``Limits.max_text_chars`` characters;
4. ``unknown_label``: classification only, when ``allowed_labels`` is given (exact, case-sensitive match);
5. PII scrubbing (``scrub_text``) of the text columns (not labels);
6. ``duplicate``: case-insensitive on the scrubbed text (classification) or on the (query, positive)
   pair (pairs); the first occurrence is kept, and the same text under a different label is reported
   as a conflict. Scrubs are reported only for rows that end up accepted.

Line numbers are 1-based physical lines of the file (the CSV header is line 1); a CSV record spanning
several lines is reported at its first line. ``Limits.min_rows`` counts accepted rows in total, not per
label: a rare label is not a reason to refuse a file (``stratified_split`` keeps it in train).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from core.ml.spreadsheet import csv_cell
from core.ml.uploads import (
    FORMATS,  # noqa: F401 - part of this module's interface
    SURROGATE,
    Context,
    RejectedRow,
    UploadError,
    check_whole_file,
    content_start,
    csv_records,
    detect_format,
    jsonl_records,
)

TASK_COLUMNS: dict[str, tuple[str, str]] = {
    "classification": ("text", "label"),
    "pairs": ("query", "positive"),
}

Row = tuple[str, str]


class DatasetError(UploadError):
    """The file as a whole cannot be used; ``message`` is user-facing, ``rejected`` the rows read so far."""

    def __init__(self, message: str, *, rejected: Sequence[RejectedRow] = (), code: str = "") -> None:
        super().__init__(message, code=code, rejected=rejected)


@dataclass(frozen=True)
class Limits:
    max_text_chars: int = 2000
    max_line_bytes: int = 1_000_000
    max_rows: int = 200_000  # data rows in the file, rejected ones included
    min_rows: int = 2  # accepted rows in total (not per label)
    max_labels: int = 1000


@dataclass(frozen=True)
class Scrub:
    line: int
    column: str
    kind: str  # email | phone | card | iban
    count: int


@dataclass(frozen=True)
class ParsedDataset:
    task: str
    rows: tuple[Row, ...]  # accepted rows in file order, normalised and scrubbed
    labels: tuple[str, ...]  # sorted distinct labels; empty for pairs
    rejected: tuple[RejectedRow, ...]
    scrubbed: tuple[Scrub, ...]
    total_lines: int
    fingerprint: str
    format: str


@dataclass(frozen=True)
class Split:
    train: tuple[Row, ...]
    validation: tuple[Row, ...]
    test: tuple[Row, ...]


# --- PII scrubbing ---------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])")
# Uppercase IBANs, either one run or printed in groups of four; validity is decided by mod-97.
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])")
# 13-19 digits, single spaces or dashes allowed between them; validity is decided by Luhn. Card numbers
# never start with 0 or follow "+", which keeps international and national phone numbers out.
_CARD = re.compile(r"(?<![\d+-])[1-9](?:[ -]?\d){12,18}(?!\d)")
# Phones, three shapes (digit bounds checked after matching, see _phone_ok):
#   intl:  "+" or "00", country code, groups separated by space/dot/dash, "(0)" allowed; 7-15 digits
#   trunk: national number with a leading 0 ("020 7946 0958", "06-12345678", "(030) 1234567"); 9-12 digits
#   nanp:  "(555) 123-4567", "555-123-4567", "1-800-555-0199"; separators required
_PHONE = re.compile(
    r"(?<![\w+])(?:"
    r"(?P<intl>(?:\+|00)[1-9]\d{0,2}(?:[ .-]?\(\d{1,4}\)|[ .-]?\d{1,5}){1,6})"
    r"|(?P<trunk>(?:\(0\d{1,4}\)|0\d{1,4})(?:[ .-]?\d{2,4}){1,4})"
    r"|(?P<nanp>(?:1[ .-])?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4})"
    r")(?![\w])"
)
_PHONE_DIGITS = {"intl": (7, 15), "trunk": (9, 12), "nanp": (10, 11)}
_DATE = re.compile(r"\d{4}[./-]\d{1,2}[./-]\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")
_PLACEHOLDERS = {"email": "[EMAIL]", "iban": "[IBAN]", "card": "[CARD]", "phone": "[PHONE]"}


def luhn_valid(digits: str) -> bool:
    """Luhn checksum of a string of digits (separators must already be removed)."""
    if not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def iban_valid(s: str) -> bool:
    """ISO 13616 check: 15-34 characters, country letters, check digits, mod 97 == 1. Spaces ignored."""
    iban = s.replace(" ", "").upper()
    if not (15 <= len(iban) <= 34 and iban.isascii() and iban.isalnum()):
        return False
    if not (iban[:2].isalpha() and iban[2:4].isdigit()):
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _card_ok(candidate: str) -> bool:
    digits = re.sub(r"[ -]", "", candidate)
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _phone_ok(match: re.Match[str]) -> bool:
    shape = match.lastgroup or ""
    low, high = _PHONE_DIGITS[shape]
    text = match.group(0)
    return low <= sum(ch.isdigit() for ch in text) <= high and not _DATE.search(text)


def _always(match: re.Match[str]) -> bool:
    return True


_CHECKS: tuple[tuple[str, re.Pattern[str], Callable[[re.Match[str]], bool]], ...] = (
    ("email", _EMAIL, _always),
    ("iban", _IBAN, lambda m: iban_valid(m.group(0))),
    ("card", _CARD, lambda m: _card_ok(m.group(0))),
    ("phone", _PHONE, _phone_ok),
)


def _substitute(
    text: str, pattern: re.Pattern[str], ok: Callable[[re.Match[str]], bool], placeholder: str
) -> tuple[str, int]:
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        if not ok(match):
            return match.group(0)
        count += 1
        return placeholder

    return pattern.sub(replace, text), count


def scrub_text(text: str) -> tuple[str, list[tuple[str, int]]]:
    """Replace e-mails, IBANs, card numbers and phone numbers with placeholders.

    Returns the new text and ``[(kind, count), ...]`` for the kinds found. Applied in the order
    e-mail, IBAN, card, phone, so that digits inside an IBAN or card are never taken for a phone.
    """
    found: list[tuple[str, int]] = []
    for kind, pattern, ok in _CHECKS:
        if kind == "email" and "@" not in text:
            continue
        text, count = _substitute(text, pattern, ok, _PLACEHOLDERS[kind])
        if count:
            found.append((kind, count))
    return text, found


# --- reading the file ----------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _normalise(value: str) -> str:
    return " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", value)).split())


def _quote(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _check_columns(
    found: Sequence[str], expected: tuple[str, str], noun: str, *, extra_ok: bool = False
) -> None:
    shown = ", ".join(name or "(empty)" for name in found)
    missing = [name for name in expected if name not in found]
    if missing:
        hint = ""
        if len(found) == 1 and any(sep in found[0] for sep in ";\t|"):
            hint = "; values must be separated by commas"
        raise DatasetError(f"missing required {noun} {_quote(missing[0])}; found {noun}s: {shown}{hint}")
    duplicated = sorted({name for name in found if found.count(name) > 1})
    if duplicated:
        raise DatasetError(f"{noun} {_quote(duplicated[0])} appears more than once")
    extra = [name for name in found if name not in expected]
    if extra and not extra_ok:
        names = ", ".join(_quote(name) for name in extra)
        raise DatasetError(f"unexpected {noun}(s) {names}; expected exactly: {', '.join(expected)}")


def _read_csv(
    data: bytes, start: int, columns: tuple[str, str], ctx: Context, extra_ok: bool = False
) -> Iterator[tuple[int, Row]]:
    rows = csv_records(data, start, ctx)
    header = next(rows, None)
    if ctx.rejected:
        first = min(ctx.rejected.values(), key=lambda r: r.line)
        raise DatasetError(f"could not read the header on line {first.line}: {first.detail}")
    if header is None:
        raise DatasetError("the file is empty")
    if SURROGATE.search("".join(header[1])):
        raise DatasetError('the file is not UTF-8 text; save it as UTF-8 ("CSV UTF-8" in Excel)')
    names = [name.strip().lower() for name in header[1]]
    _check_columns(names, columns, "column", extra_ok=extra_ok)
    order = [names.index(name) for name in columns]
    for line, values in rows:
        ctx.count_row()
        if SURROGATE.search("".join(values)):
            ctx.reject(line, "bad_encoding", "the row contains bytes that are not valid UTF-8", counted=True)
        elif len(values) != len(names):
            detail = f"expected {len(names)} values, found {len(values)}"
            ctx.reject(line, "malformed", detail, counted=True)
        else:
            yield line, (values[order[0]], values[order[1]])


def _json_value(value: object, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ValueError(f"field {_quote(name)} must be a string, got {type(value).__name__}")


def _read_jsonl(
    data: bytes, start: int, columns: tuple[str, str], ctx: Context, extra_ok: bool = False
) -> Iterator[tuple[int, Row]]:
    keys: set[str] | None = None
    for lineno, obj in jsonl_records(data, start, ctx, not_object="malformed"):
        assert obj is not None
        if keys is None:
            _check_columns(list(obj), columns, "field", extra_ok=extra_ok)
            keys = set(columns)
        fits = keys <= set(obj) if extra_ok else set(obj) == keys
        if not fits:
            found = ", ".join(sorted(obj)) or "none"
            ctx.reject(lineno, "malformed", f"expected fields {', '.join(columns)}; found {found}")
            continue
        try:
            row = (_json_value(obj[columns[0]], columns[0]), _json_value(obj[columns[1]], columns[1]))
        except ValueError as exc:
            ctx.reject(lineno, "malformed", str(exc))
            continue
        ctx.count_row()
        yield lineno, row


# --- validation ------------------------------------------------------------------------------------


@dataclass
class _Accepted:
    rows: list[Row] = field(default_factory=list)
    scrubbed: list[Scrub] = field(default_factory=list)
    seen: dict[object, tuple[int, str]] = field(default_factory=dict)  # dedupe key -> (line, label)


def _row_problem(
    values: Row, task: str, allowed: frozenset[str] | None, limits: Limits
) -> tuple[str, str] | None:
    columns = TASK_COLUMNS[task]
    for name, value in zip(columns, values, strict=True):
        if not value:
            return ("empty_label" if name == "label" else "empty_text"), f"column {_quote(name)} is empty"
    for name, value in zip(columns, values, strict=True):
        if len(value) > limits.max_text_chars:
            return (
                "too_long",
                f"column {_quote(name)} has {len(value)} characters; the limit is {limits.max_text_chars}",
            )
    if task == "classification" and allowed is not None and values[1] not in allowed:
        return "unknown_label", f"label {_quote(values[1])} is not one of the allowed labels"
    return None


def _duplicate_detail(task: str, label: str, first: tuple[int, str]) -> str:
    line, first_label = first
    if task == "classification" and label != first_label:
        return (
            f"same text as line {line} but with label {_quote(label)} instead of {_quote(first_label)}; "
            f"kept line {line}"
        )
    return f"same {'text' if task == 'classification' else 'query and positive'} as line {line}"


def _accept(line: int, values: Row, task: str, acc: _Accepted, ctx: Context) -> None:
    columns = TASK_COLUMNS[task]
    text_count = 1 if task == "classification" else 2
    cleaned = list(values)
    scrubs: list[Scrub] = []
    for i in range(text_count):
        cleaned[i], found = scrub_text(values[i])
        scrubs.extend(Scrub(line=line, column=columns[i], kind=k, count=n) for k, n in found)
    row: Row = (cleaned[0], cleaned[1])
    key: object = row[0].casefold() if task == "classification" else (row[0].casefold(), row[1].casefold())
    if key in acc.seen:
        detail = _duplicate_detail(task, row[1], acc.seen[key])
        ctx.reject(line, "duplicate", detail, counted=True)
        return
    acc.seen[key] = (line, row[1])
    acc.rows.append(row)
    acc.scrubbed.extend(scrubs)


def _summary(rejected: Sequence[RejectedRow]) -> str:
    counts = Counter(row.reason for row in rejected)
    return ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items()))


def _check_result(task: str, acc: _Accepted, ctx: Context, rejected: tuple[RejectedRow, ...]) -> None:
    limits = ctx.limits
    if not acc.rows:
        if not rejected:
            raise DatasetError("no valid rows: the file has no data rows")
        if all(row.reason == "bad_encoding" for row in rejected):
            raise DatasetError(
                'the file is not UTF-8 text; save it as UTF-8 ("CSV UTF-8" in Excel)', rejected=rejected
            )
        raise DatasetError(
            f"no valid rows: all {len(rejected)} rows were rejected ({_summary(rejected)})", rejected=rejected
        )
    if len(acc.rows) < limits.min_rows:
        raise DatasetError(
            f"too few rows: {len(acc.rows)} valid, at least {limits.min_rows} needed", rejected=rejected
        )
    if task == "classification":
        labels = {label for _, label in acc.rows}
        if len(labels) < 2:
            raise DatasetError(
                f"needs at least 2 labels; every valid row has label {_quote(labels.pop())}",
                rejected=rejected,
            )
        if len(labels) > limits.max_labels:
            raise DatasetError(
                f"too many labels: {len(labels)}; the limit is {limits.max_labels}", rejected=rejected
            )


def parse_dataset(
    *,
    data: bytes,
    task: str,
    filename: str | None = None,
    fmt: str | None = None,
    allowed_labels: Collection[str] | None = None,
    columns: tuple[str, str] | None = None,
    limits: Limits = Limits(),  # noqa: B008 - frozen, so a shared default is safe
) -> ParsedDataset:
    """Validate an upload row by row; raise ``DatasetError`` when the file as a whole is unusable.

    ``columns`` names the file's columns (CSV) or fields (JSONL) that hold the task's two values, e.g.
    ``("utterance", "intent")`` for classification; other columns are then ignored. Without it the file
    must have exactly the task's columns (``TASK_COLUMNS``).
    """
    if task not in TASK_COLUMNS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_COLUMNS)}")
    wanted = TASK_COLUMNS[task] if columns is None else _column_names(columns)
    start = content_start(data)
    fmt = detect_format(data, start, filename, fmt)
    check_whole_file(data, start, fmt, DatasetError)
    ctx = Context(limits=limits, error=DatasetError)
    read = _read_csv if fmt == "csv" else _read_jsonl
    allowed = None if allowed_labels is None else frozenset(_normalise(label) for label in allowed_labels)
    acc = _Accepted()
    for line, raw in read(data, start, wanted, ctx, columns is not None):
        values: Row = (_normalise(raw[0]), _normalise(raw[1]))
        problem = _row_problem(values, task, allowed, limits)
        if problem is not None:
            ctx.reject(line, *problem, counted=True)
        else:
            _accept(line, values, task, acc, ctx)
    rejected = tuple(sorted(ctx.rejected.values(), key=lambda row: row.line))
    _check_result(task, acc, ctx, rejected)
    return ParsedDataset(
        task=task,
        rows=tuple(acc.rows),
        labels=tuple(sorted({label for _, label in acc.rows})) if task == "classification" else (),
        rejected=rejected,
        scrubbed=tuple(acc.scrubbed),
        total_lines=data.count(b"\n") + (0 if data.endswith(b"\n") else 1),
        fingerprint=fingerprint_rows(acc.rows),
        format=fmt,
    )


def parse_rows(
    *,
    rows: Iterable[Sequence[str]],
    task: str,
    allowed_labels: Collection[str] | None = None,
    limits: Limits = Limits(),  # noqa: B008 - frozen, so a shared default is safe
) -> ParsedDataset:
    """``parse_dataset`` for rows a product already holds (corrections, imported pairs): the same rules
    from step 2 on (normalise, empty, too long, unknown label, scrub, de-duplicate); "line" is the 1-based
    position of the row."""
    if task not in TASK_COLUMNS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_COLUMNS)}")
    ctx = Context(limits=limits, error=DatasetError)
    allowed = None if allowed_labels is None else frozenset(_normalise(label) for label in allowed_labels)
    acc = _Accepted()
    for line, row in enumerate(rows, start=1):
        ctx.count_row()
        if len(row) != 2 or not all(isinstance(value, str) for value in row):
            ctx.reject(line, "malformed", "a row is two strings", counted=True)
            continue
        values: Row = (_normalise(row[0]), _normalise(row[1]))
        problem = _row_problem(values, task, allowed, limits)
        if problem is not None:
            ctx.reject(line, *problem, counted=True)
        else:
            _accept(line, values, task, acc, ctx)
    rejected = tuple(sorted(ctx.rejected.values(), key=lambda row: row.line))
    _check_result(task, acc, ctx, rejected)
    return ParsedDataset(
        task=task,
        rows=tuple(acc.rows),
        labels=tuple(sorted({label for _, label in acc.rows})) if task == "classification" else (),
        rejected=rejected,
        scrubbed=tuple(acc.scrubbed),
        total_lines=ctx.rows_seen,
        fingerprint=fingerprint_rows(acc.rows),
        format="rows",
    )


def _column_names(columns: Sequence[str]) -> tuple[str, str]:
    names = tuple(str(name).strip().lower() for name in columns)
    if len(names) != 2 or not all(names):
        raise DatasetError("name two columns: the text column and the label column")
    if names[0] == names[1]:
        raise DatasetError(f"the two columns must differ; both are {_quote(names[0])}")
    return names[0], names[1]


# --- fingerprint, split, report ------------------------------------------------------------------


def fingerprint_rows(rows: Collection[Sequence[str]]) -> str:
    """sha256 hex over the rows as a multiset: the same rows in any order give the same fingerprint."""
    digest = hashlib.sha256()
    for encoded in sorted(json.dumps(list(row), ensure_ascii=False) for row in rows):
        digest.update(encoded.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _eval_counts(n: int, validation: float, test: float) -> tuple[int, int]:
    n_val, n_test = int(n * validation + 0.5), int(n * test + 0.5)  # round half up
    while n_val + n_test > n - 1 and (n_val or n_test):  # always leave at least one row in train
        if n_test >= n_val:
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def stratified_split(
    *,
    rows: Collection[Row],
    seed: int = 13,
    validation: float = 0.1,
    test: float = 0.1,
    stratify: bool = True,
) -> Split:
    """Deterministic split, stratified by label (the second column) unless ``stratify`` is False.

    Each label with n rows gives round-half-up(n * validation) rows to validation and
    round-half-up(n * test) to test, shrinking test first, then validation, so that train always keeps at
    least one row: at the default 10 % a label needs 5 rows before it appears in validation or test.
    Pairs should pass ``stratify=False`` (their second column is text, not a label). The result depends
    only on the rows as a set and the seed, not on their order.
    """
    if validation < 0 or test < 0 or validation + test >= 1:
        raise ValueError("validation and test must be non-negative and sum to less than 1")
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row[1] if stratify else "", []).append(row)
    rng = random.Random(seed)
    parts: tuple[list[Row], list[Row], list[Row]] = ([], [], [])
    for label in sorted(groups):
        group = sorted(groups[label])
        rng.shuffle(group)
        n_val, n_test = _eval_counts(len(group), validation, test)
        parts[1].extend(group[:n_val])
        parts[2].extend(group[n_val : n_val + n_test])
        parts[0].extend(group[n_val + n_test :])
    for part in parts:
        rng.shuffle(part)  # interleave labels
    return Split(train=tuple(parts[0]), validation=tuple(parts[1]), test=tuple(parts[2]))


def report_csv(parsed: ParsedDataset) -> str:
    """CSV report for download: ``line,status,reason,detail``, one row per rejection or scrub, by line."""
    entries = [(r.line, 0, "rejected", r.reason, r.detail) for r in parsed.rejected]
    entries += [
        (s.line, 1, "scrubbed", s.kind, f"{s.count} {s.kind} replaced in column {s.column!r}")
        for s in parsed.scrubbed
    ]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["line", "status", "reason", "detail"])
    for line, _, status, reason, detail in sorted(entries, key=lambda e: e[:2]):
        writer.writerow([line, status, reason, csv_cell(detail)])
    return out.getvalue()
