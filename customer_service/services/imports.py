"""Bulk imports from CSV files: answer templates (``intent,answer``) and historical questions and answers
(``question,answer``: knowledge-base articles, and with enough pairs a fine-tune of the retrieval model).
Files are read by the platform's upload reader; rejected rows come back with their line and reason."""

from typing import Any

from django.db import transaction

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import InvalidInput
from core.ml import uploads
from core.registry import services as registry
from customer_service.models import Article
from customer_service.services.common import APP, RETRIEVAL_TASK
from customer_service.services.knowledge import (
    MAX_ARTICLE_CHARS,
    MAX_TEMPLATE_CHARS,
    _index_articles,
    template_save,
)

MAX_UPLOAD_BYTES = 5 * 1024 * 1024
MAX_QA_ROWS = 5000
MIN_QA_PAIRS_TO_TRAIN = 50


def _read_pairs_csv(
    data: bytes, *, columns: tuple[str, str], limits: tuple[int, int]
) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Rows of a two-column CSV with a header, read by the platform's upload reader (``core.ml.uploads``):
    ``{first: second}`` for the usable ones (the first column unique), and the rejected ones with their line
    and reason. Refuses an unusable file as a whole."""
    if not data:
        raise InvalidInput("The file is empty.", details={"field": "file"})
    if len(data) > MAX_UPLOAD_BYTES:
        raise InvalidInput("The file is larger than 5 MB.", details={"field": "file"})
    try:
        upload = uploads.read_upload(data, fmt="csv", limits=uploads.ReadLimits(max_bytes=MAX_UPLOAD_BYTES))
    except uploads.UploadError as exc:
        message = {
            "encoding": f"The file is not UTF-8 (byte {exc.byte} cannot be read).",
            "utf16": "The file is UTF-16 encoded, not UTF-8; save it as UTF-8.",
        }.get(exc.code, exc.message[:1].upper() + exc.message[1:] + ".")
        raise InvalidInput(message, details={"field": "file"}) from exc
    if sorted(upload.columns) != sorted(columns):
        found = ",".join(upload.columns) or "nothing"
        raise InvalidInput(
            f"The header must be exactly {','.join(columns)} (found: {found}).",
            details={"field": "file"},
        )
    key, value = columns
    accepted: dict[str, str] = {}
    rejected: list[dict[str, Any]] = [
        {"line": r.line, "reason": r.detail[:1].upper() + r.detail[1:] + "."} for r in upload.rejected
    ]
    for line, record in enumerate(upload.records, start=2):  # a line is a record: the header is 1
        row = record.values
        if record.extra:
            rejected.append({"line": line, "reason": "More fields than the header."})
            continue
        first, second = (row.get(key) or "").strip(), (row.get(value) or "").strip()
        if not first or len(first) > limits[0]:
            reason = f"The {key} must be 1 to {limits[0]} characters."
        elif not second or len(second) > limits[1]:
            reason = f"The {value} must be 1 to {limits[1]} characters."
        elif first in accepted:
            reason = f"'{first[:60]}' was already given on an earlier line."
        else:
            accepted[first] = second
            continue
        rejected.append({"line": line, "reason": reason})
    rejected.sort(key=lambda r: r["line"])
    if not accepted:
        raise InvalidInput("No usable rows in the file.", details={"rejected": rejected[:50]})
    return accepted, rejected


def templates_import(*, organisation, data: bytes) -> dict[str, Any]:
    """Create or replace answer templates from a CSV with ``intent`` and ``answer`` columns (a header row).

    Rows with an empty or over-long intent or answer, or an intent already given earlier in the file, are
    rejected with their line and reason; the others are saved together, or none if the file is unusable.
    """
    accepted, rejected = _read_pairs_csv(data, columns=("intent", "answer"), limits=(100, MAX_TEMPLATE_CHARS))
    with transaction.atomic():
        for intent, body in accepted.items():
            template_save(organisation=organisation, intent=intent, body=body)
    return {"saved": len(accepted), "rejected": rejected}


def qa_import(*, organisation, data: bytes, train: bool = True, created_by=None) -> dict[str, Any]:
    """Historical questions and answers (a CSV with ``question`` and ``answer`` columns) into the bot.

    Each pair becomes a knowledge-base article (the question as its title, so similar new questions find it).
    With ``train`` and at least 50 pairs, the pairs also become a ``pairs`` dataset and a job fine-tunes the
    retrieval model (``customer_service``/``retrieval``) on them; once promoted, the knowledge base is
    re-embedded with it on the next search. All articles are saved, or none.
    """
    accepted, rejected = _read_pairs_csv(
        data, columns=("question", "answer"), limits=(200, MAX_ARTICLE_CHARS)
    )
    if len(accepted) > MAX_QA_ROWS:
        raise InvalidInput(f"At most {MAX_QA_ROWS} pairs per file; split it.", details={"field": "file"})
    billing.quota_check(organisation=organisation, meter=Meter.STORED_RECORDS, quantity=len(accepted))
    with transaction.atomic():
        articles = Article.all_tenants.bulk_create(
            Article(organisation=organisation, title=question, body=answer)
            for question, answer in accepted.items()
        )
        _index_articles(organisation, articles)
    job = None
    if train and len(accepted) >= MIN_QA_PAIRS_TO_TRAIN:
        dataset = registry.dataset_from_rows(
            organisation=organisation,
            name="historical-qa",
            task="pairs",
            rows=list(accepted.items()),
            source="historical-qa.csv",
        )
        job = registry.model_train_start(
            organisation=organisation,
            dataset_id=dataset.pk,
            app=APP,
            task=RETRIEVAL_TASK,
            created_by=created_by,
        )
    return {"articles": len(accepted), "rejected": rejected, "job": job.pk if job is not None else None}
