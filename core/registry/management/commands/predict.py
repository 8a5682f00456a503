"""Predict with an organisation's model: texts from a file or stdin, one output row per input row.

    python manage.py predict --org acme --app <product> --task intent --input texts.csv --top-k 3
    echo "where is my card" | python manage.py predict --org acme --version-id 12

Input: CSV (a ``text`` column, optional ``id``), JSON Lines (``{"id": ..., "text": ...}``) or plain lines,
by extension or ``--input-format``. An empty text is not sent to the model: its row says ``error`` (and a
warning goes to stderr), so output row N is always input row N. Output: JSON Lines or CSV with the id, the
label, its confidence, the top-k labels when asked, the model version id and the path serving it.
"""

import csv
import io
import json
import sys
from pathlib import Path

from django.core.management.base import CommandError

from core.errors import TrellisError
from core.ml.spreadsheet import csv_cell
from core.ml.uploads import ReadLimits, Upload, UploadError, read_upload
from core.registry import services
from core.registry.management import cli

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
EMPTY = "empty text"
GUARDED = ("id", "label", "top_k", "error")  # the CSV cells that carry text from the input or the training


class Command(cli.Command):
    help = "Predict labels for texts (CSV, JSON Lines or plain lines), one output row per input row."

    def add_arguments(self, parser):
        cli.add_model_arguments(parser, action="predict with")
        parser.add_argument(
            "--input", "--file", dest="input", type=Path, default=None, help="input file (default: stdin)"
        )
        parser.add_argument(
            "--input-format",
            choices=["auto", "csv", "jsonl", "lines"],
            default="auto",
            help="auto: by the file's extension (.csv, .jsonl; anything else and stdin: plain lines)",
        )
        parser.add_argument(
            "--id-column", default="id", help="CSV column / JSONL field of row ids, if present"
        )
        parser.add_argument("--text-column", default="text", help="CSV column / JSONL field of the texts")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="output format")
        parser.add_argument("--top-k", type=int, default=1, help="also list the k most likely labels (k > 1)")
        parser.add_argument("--decimals", type=int, default=cli.DECIMALS, help="digits of the probabilities")

    def handle(self, *args, **opts):
        org = cli.organisation(opts["org"])
        if opts["top_k"] < 1:
            raise CommandError("--top-k must be at least 1.")
        rows = self._read(opts)
        try:
            version = services.classifier_version(organisation=org, **cli.model_selector(opts))
        except TrellisError as exc:
            raise CommandError(exc.message)
        serving = services.serving_path(version=version)
        cli.note(
            self.stderr,
            f"model version {version.pk} ({version.app}/{version.task} v{version.version}, "
            f"{version.method}), serving {serving}",
        )
        empty = [row_id for row_id, text in rows if not text.strip()]
        if empty:
            shown = ", ".join(str(i) for i in empty[:10]) + (" ..." if len(empty) > 10 else "")
            cli.note(self.stderr, f"warning: {len(empty)} empty text(s) not predicted (rows {shown})")
        writer = _Writer(self.stdout, opts["format"], opts["top_k"] > 1)
        base = {"model_version": version.pk, "version": version.version, "serving": serving}
        for start in range(0, len(rows), services.MAX_PREDICT_TEXTS):
            chunk = rows[start : start + services.MAX_PREDICT_TEXTS]
            texts = [text for _, text in chunk if text.strip()]
            predictions = iter(self._predict(org, version.pk, texts) if texts else [])
            for row_id, text in chunk:
                if not text.strip():
                    writer.write({"id": row_id, "error": EMPTY, **base})
                    continue
                probabilities = next(predictions)["probabilities"]
                ranked = sorted(probabilities.items(), key=lambda item: -item[1])
                out = {
                    "id": row_id,
                    "label": ranked[0][0],
                    "confidence": round(ranked[0][1], opts["decimals"]),
                }
                if opts["top_k"] > 1:
                    out["top_k"] = [
                        {"label": label, "probability": round(p, opts["decimals"])}
                        for label, p in ranked[: opts["top_k"]]
                    ]
                writer.write({**out, **base})

    def _predict(self, org, version_id: int, texts: list[str]) -> list[dict]:
        try:
            return services.model_predict(organisation=org, version_id=version_id, texts=texts)["predictions"]
        except TrellisError as exc:
            raise CommandError(exc.message)

    def _read(self, opts) -> list[tuple[str, str]]:
        """(id, text) per input row; ids default to the 1-based row number."""
        path = opts["input"]
        if path is not None and not path.is_file():
            raise CommandError(f"No such file: {path}")
        fmt = opts["input_format"]
        if fmt == "auto":
            fmt = FORMATS.get(path.suffix.lower(), "lines") if path else "lines"
        if path is not None:
            raw = path.read_bytes()
        else:  # the real stdin is read as bytes, so its decoding does not depend on the locale
            raw = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
        id_column, text_column = opts["id_column"].strip().lower(), opts["text_column"].strip().lower()
        try:  # one upload reader for every input (core.ml.uploads); blank rows keep their place
            everything = ReadLimits(max_bytes=len(raw), max_rows=len(raw) + 1, max_line_bytes=len(raw) + 1)
            upload = read_upload(raw, fmt=fmt, keep_blank=True, limits=everything)
        except UploadError as exc:
            if exc.code == "empty" and fmt != "csv":
                return []
            if exc.code == "encoding":
                raise CommandError(f"The input is not UTF-8 text (byte {exc.byte}).") from None
            if exc.code != "empty":
                raise CommandError(f"The input cannot be read: {exc.message}.") from None
            upload = None
        if fmt == "lines":
            return [(str(r.line), r.values["text"]) for r in upload.records]
        if fmt == "csv":
            return _read_csv(upload, id_column, text_column)
        return _read_jsonl(upload, id_column, text_column)


def _problem(upload: Upload, what: str) -> None:
    if upload.rejected:
        first = upload.rejected[0]
        detail = "expected an object" if first.reason == "not_object" else first.detail
        raise CommandError(f"{what} line {first.line}: {detail}.")


def _read_csv(upload: Upload | None, id_column: str, text_column: str) -> list[tuple[str, str]]:
    header = list(upload.columns) if upload is not None else []
    if upload is None or text_column not in header:
        raise CommandError(
            f"The CSV has no '{text_column}' column (found: {', '.join(header) or 'none'}); "
            "see --text-column."
        )
    _problem(upload, "CSV")
    rows = []
    for n, record in enumerate(upload.records, 1):
        found = len(header) + len(record.extra) - sum(v is None for v in record.values.values())
        if found != len(header):
            raise CommandError(f"CSV row {n}: expected {len(header)} values, found {found}.")
        row_id = record.values[id_column] if id_column in header else str(n)
        rows.append((row_id, record.values[text_column]))
    return rows


def _read_jsonl(upload: Upload, id_column: str, text_column: str) -> list[tuple[str, str]]:
    _problem(upload, "JSON Lines")
    rows = []
    for record in upload.records:
        value = record.values.get(text_column)
        if value is not None and not isinstance(value, str):
            raise CommandError(f"JSON Lines line {record.line}: '{text_column}' must be a string.")
        row_id = record.values.get(id_column, record.line)
        rows.append((row_id if isinstance(row_id, str) else json.dumps(row_id), value or ""))
    return rows


class _Writer:
    def __init__(self, stdout, fmt: str, top_k: bool) -> None:
        self.stdout, self.fmt = stdout, fmt
        if fmt == "csv":
            names = ["id", "label", "confidence", *(["top_k"] if top_k else []), "model_version", "serving"]
            self.names = [*names, "error"]
            self.buffer = io.StringIO()
            self.csv = csv.DictWriter(
                self.buffer, fieldnames=self.names, extrasaction="ignore", lineterminator="\n"
            )
            self.csv.writeheader()
            self._flush()

    def write(self, row: dict) -> None:
        if self.fmt == "jsonl":
            self.stdout.write(json.dumps(row, ensure_ascii=False))
            return
        if "top_k" in row:
            row = {**row, "top_k": " ".join(f"{t['label']}:{t['probability']}" for t in row["top_k"])}
        # ids and labels are the tenant's data (often written by the public): the batch CSV's formula guard
        self.csv.writerow({k: csv_cell(v) if k in GUARDED else v for k, v in row.items()})
        self._flush()

    def _flush(self) -> None:
        self.stdout.write(self.buffer.getvalue(), ending="")
        self.buffer.seek(0)
        self.buffer.truncate()
