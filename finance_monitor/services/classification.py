"""Classifying documents: the organisation's active ``topic`` and ``sentiment`` models, in batches, on the
``infer`` queue.

Accepting documents queues ``finance_monitor.classify_documents`` for the organisation after commit
(:func:`classify_enqueue`, at most one waiting per organisation); beat's ``finance_monitor.classify_pending``
queues it again for every organisation with pending documents, so documents that waited for a model, for the
quota, or for a worker that died are picked up. :func:`documents_classify_pending` takes the pending documents
(``classified_at`` null) in id order, ``FM_CLASSIFY_BATCH`` at a time: both models predict on a batch read
without locks, outside any transaction (a push counting a near copy on one of its documents does not wait for
the encoder), then one short transaction locks the batch's rows still pending (``SKIP LOCKED``) and records
those: counted in the trends (``trends.documents_classified``: one upsert per batch), charged to the
``documents_classified`` meter, and sent to the organisation's live feed (``fm.documents``, after commit:
``services.dashboard``). Two runs on the same rows record them once (the second finds them locked or no
longer pending and stops); a worker that dies mid-batch commits nothing of it, and the next run takes the same
rows again and the trends count them once.

One encoder pass per document feeds both heads: the registry's ``predict_shared`` embeds the batch once
for every version on the same encoder (the default models are heads on the frozen base encoder) and runs
each head on those embeddings; a fine-tuned version (its own encoder) makes its own pass. When both versions
serve int8 (each passed its gate) the pass is int8; when one did not, both are served by their float models
(``float_encoder``) rather than split into an int8 and a float pass: one float pass costs less than the two
(bench/fm_ingest.py), and float is what each gate measured int8 against. On a CPU with AMX, where both
versions passed their bf16 gates, the pass is bf16 (``core.ml.bf16``: about twice the int8 encoder there).
The job's result reports the seconds of the encoder passes and of each head (``seconds``).

What the models are given of a document is :func:`document_text`: its title and text. They read it in the
tasks' text form, each web link as the word "link" (``finance_monitor.links.LINKS_AS_WORD``, declared on
the model tasks: a version trained since records it, the predictor applies it, and a version trained before
reads texts as given, as it was trained to). A shortened link is a random string that the encoder's
tokeniser cuts into a dozen pieces: a third of a tweet's tokens. Replaced, the fast defaults classified the
validation tweets in 29% (sentiment) and 37% (topic) less CPU time, at 0.08 and 0.83 points more accuracy;
links removed altogether were as fast but lost the hint that a text carries one (sentiment 0.21 points below
keeping them): BENCHMARKS.md section 16, fifteenth-session addendum. The stored document keeps its text as it
came.

Without an active topic or sentiment model the documents stay pending; the first time that happens, the
organisation's default models are trained (``services.defaults``, when ``FM_DEFAULT_MODELS_ON_FIRST_USE``),
and their job queues classification again when it succeeds.
"""

import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from core.billing import services as billing
from core.celery import app as celery_app
from core.errors import InvalidInput, QuotaExceeded
from core.jobs.queues import Queue
from core.registry.services import predict_shared, serves_bf16, serves_int8
from core.registry.services.common import active_version
from finance_monitor.models import Document, Sentiment
from finance_monitor.services.dashboard import documents_classified_broadcast
from finance_monitor.services.trends import Classified, documents_classified

log = logging.getLogger(__name__)

APP = "finance_monitor"
TOPIC_TASK, SENTIMENT_TASK = "topic", "sentiment"
METER = "documents_classified"
TASK_NAME = "finance_monitor.classify_documents"
QUEUED_FOR_S = 120  # while a run is queued for an organisation, more documents queue no second one


def _queued_key(organisation_id: int) -> str:
    return f"fm:classify-queued:{organisation_id}"


def classify_enqueue(*, organisation_id: int) -> None:
    """Queue a classification run for the organisation after commit, unless one is already waiting."""

    def send() -> None:
        if cache.add(_queued_key(organisation_id), 1, timeout=QUEUED_FOR_S):
            celery_app.send_task(TASK_NAME, args=[organisation_id], queue=Queue.INFER)

    transaction.on_commit(send)


def classify_started(*, organisation_id: int) -> None:
    """A run has started: documents that arrive from now on queue the next one."""
    cache.delete(_queued_key(organisation_id))


def document_text(document: Document) -> str:
    """What the topic and sentiment models are given of ``document`` (classification and the analysts'
    corrections alike): the title and the text (each version reads it in its text form)."""
    title, text = document.title.strip(), document.text.strip()
    return f"{title}. {text}" if title and not text.startswith(title) else text


def topic_check(*, organisation, topic: str) -> None:
    """Refuse a topic the organisation's active topic model does not answer (an analyst's correction, an alert
    rule's topic), naming its topics; before there is a topic model any topic is taken."""
    version = active_version(organisation, APP, TOPIC_TASK)
    if version is not None and version.labels and topic not in version.labels:
        raise InvalidInput(
            f"'{topic[:100]}' is not a topic of the active topic model.",
            details={"field": "topic", "topics": list(version.labels)},
        )


@dataclass
class ClassifyRun:
    classified: int = 0
    batches: int = 0
    pending: int = 0  # documents still pending when the run stopped
    stopped: str = ""  # why it stopped before the queue was empty ("" when it emptied it)
    seconds: dict[str, float] = field(
        default_factory=lambda: {"encoder": 0.0, TOPIC_TASK: 0.0, SENTIMENT_TASK: 0.0}
    )
    models: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "classified": self.classified,
            "batches": self.batches,
            "pending": self.pending,
            "stopped": self.stopped,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "models": self.models,
        }


def pending_documents(*, organisation):
    # copies are never classified (their original is): ``services.documents``
    return Document.objects.for_org(organisation).filter(
        classified_at__isnull=True, duplicate_of__isnull=True
    )


def _allowance(organisation, wanted: int) -> tuple[int, str]:
    """How many of ``wanted`` the documents_classified quota lets through now, and why not all."""
    try:
        billing.quota_check(organisation=organisation, meter=METER, quantity=wanted)
    except QuotaExceeded as exc:
        return max(0, int(float(exc.limit) - float(exc.used))), exc.message
    return wanted, ""


def documents_classify_pending(
    *, organisation, batch_size: int | None = None, max_documents: int | None = None
) -> ClassifyRun:
    """Classify the organisation's pending documents (up to ``max_documents``); see the module docstring."""
    batch_size = batch_size or settings.FM_CLASSIFY_BATCH
    max_documents = max_documents or settings.FM_CLASSIFY_MAX_PER_RUN
    run = ClassifyRun()
    topic_version = active_version(organisation, APP, TOPIC_TASK)
    sentiment_version = active_version(organisation, APP, SENTIMENT_TASK)
    if topic_version is None or sentiment_version is None:
        run.pending = pending_documents(organisation=organisation).count()
        run.stopped = "no active topic and sentiment models"
        if run.pending and settings.FM_DEFAULT_MODELS_ON_FIRST_USE:
            from finance_monitor.services.defaults import monitor_defaults_install_once

            monitor_defaults_install_once(organisation=organisation)
        return run
    missing = set(Sentiment.values) - set(sentiment_version.labels or [])
    if missing:
        run.pending = pending_documents(organisation=organisation).count()
        run.stopped = (
            f"the active sentiment model (version {sentiment_version.pk}) does not answer"
            f" {', '.join(sorted(missing))}: its labels must be positive, neutral and negative"
        )
        log.warning("organisation %s: %s", organisation.pk, run.stopped)
        return run
    run.models = {TOPIC_TASK: topic_version.pk, SENTIMENT_TASK: sentiment_version.pk}
    versions = (topic_version, sentiment_version)
    while run.classified < max_documents:
        wanted = min(batch_size, max_documents - run.classified)
        done = _classify_batch(organisation, wanted, versions, run)
        if not done:
            break
    run.pending = pending_documents(organisation=organisation).count()
    if run.pending and not run.stopped:
        run.stopped = f"reached {max_documents} documents in one run"
    return run


def _classify_batch(organisation, wanted: int, versions, run: ClassifyRun) -> int:
    try:
        return _classify_locked_batch(organisation, wanted, versions, run)
    except QuotaExceeded as exc:  # a concurrent charge took the rest of the month: nothing of it committed
        run.stopped = exc.message
        return 0


def encoder_pass(versions) -> dict[str, bool]:
    """``predict_shared``'s options for one shared pass over ``versions``: bf16 where every one may run it
    here (AMX, each passed its bf16 gate); else int8 where every one serves int8 (each passed its gate);
    otherwise float (see the module docstring)."""
    bf16 = all(serves_bf16(v) for v in versions)
    return {"bf16": bf16, "float_encoder": not bf16 and not all(serves_int8(v) for v in versions)}


def _predict(versions, texts: list[str], run: ClassifyRun) -> tuple[list, list]:
    """Topic and sentiment of ``texts``, one encoder pass for both when they share an encoder; without the
    models' out-of-scope scores (nothing here reads them)."""
    seconds: dict[str, float] = {}
    if settings.FM_SHARED_ENCODER_PASS:
        topics, sentiments = predict_shared(
            versions=versions, texts=texts, seconds=seconds, in_scope=False, **encoder_pass(versions)
        )
    else:  # the old path: each model its own encoder pass, as it serves online
        ((topics,), (sentiments,)) = (
            predict_shared(versions=[version], texts=texts, seconds=seconds, in_scope=False)
            for version in versions
        )
    run.seconds["encoder"] += seconds.get("encoder", 0.0)
    for task, version in zip((TOPIC_TASK, SENTIMENT_TASK), versions, strict=True):
        run.seconds[task] += seconds.get(str(version.pk), 0.0)
    return topics, sentiments


def _classify_locked_batch(organisation, wanted: int, versions, run: ClassifyRun) -> int:
    # The models run outside any transaction, on the next pending documents read without locks: a push that
    # counts a near copy on one of them (``copies``) never waits for the encoder. The batch's rows are locked
    # afterwards, for the write alone, and only those still pending that no other run holds are recorded:
    # a run that another worker overtook on the same rows stops (its predictions are dropped), none is counted
    # twice, and a worker that dies commits nothing.
    candidates = list(
        pending_documents(organisation=organisation).order_by("pk").only("pk", "title", "text")[:wanted]
    )
    if not candidates:
        return 0
    allowed, why = _allowance(organisation, len(candidates))
    if allowed < len(candidates):
        run.stopped = why
        candidates = candidates[:allowed]
        if not candidates:
            return 0
    topics, sentiments = _predict(versions, [document_text(d) for d in candidates], run)
    with transaction.atomic():
        mine = set(
            pending_documents(organisation=organisation)
            .filter(pk__in=[d.pk for d in candidates])
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)
        )
        answers = [
            (document, topic, sentiment)
            for document, topic, sentiment in zip(candidates, topics, sentiments, strict=True)
            if document.pk in mine
        ]
        if not answers:
            run.stopped = "another run classified these documents first"
            return 0
        batch = [document for document, _, _ in answers]
        documents_classified(
            organisation=organisation,
            items=[
                Classified(
                    document_id=document.pk,
                    topic=topic.label,
                    topic_probability=float(topic.probabilities[topic.label]),
                    probabilities={s: float(sentiment.probabilities[s]) for s in Sentiment.values},
                )
                for document, topic, sentiment in answers
            ],
        )
        billing.usage_record(
            organisation=organisation,
            meter=METER,
            quantity=len(batch),
            metadata={"documents": [batch[0].pk, batch[-1].pk], **run.models},
        )
        # the dashboards' live feed, after commit (nothing is sent for a batch that rolls back)
        documents_classified_broadcast(organisation=organisation, document_ids=[d.pk for d in batch])
    run.classified += len(batch)
    run.batches += 1
    return 0 if run.stopped else len(batch)


def organisations_with_pending() -> list[int]:
    """Every organisation with pending documents (beat's sweep; the one cross-tenant read here)."""
    return list(
        Document.all_tenants.filter(
            classified_at__isnull=True, duplicate_of__isnull=True, organisation__deleted_at__isnull=True
        )
        .values_list("organisation_id", flat=True)
        .distinct()
        .order_by("organisation_id")
    )
