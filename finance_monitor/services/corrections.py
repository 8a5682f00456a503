"""Analysts' corrections of a document's topic or sentiment, and retraining with them.

``document_correct`` records what an analyst says a document is: the topic and/or the sentiment replace the
document's (so the trend buckets move, through ``trends.document_classified``, which takes the old count out
and adds the new one), the model's own answer is kept in ``model_answer`` (on the first correction), and the
corrected values in ``corrected_topic``/``corrected_sentiment``. A corrected sentiment counts as certain
(probability 1: score +1, 0 or -1). A corrected document is never re-classified by a model.

``corrections_retrain`` hands the corrected documents of a task to the platform's retrain-from-feedback
(``core.registry.feedback``): a new version of the active model's dataset with the corrections, and a
training job on it; the promotion rule decides whether the new model replaces the active one. The corrected
documents are given as classification gives them to the models (``classification.document_text``); the
platform compares them with the dataset's rows in the tasks' text form (links as one word), so a default
dataset stored before the models read that form is retrained in it and a correction replaces its row.
"""

from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, InvalidInput, NotFound
from core.registry import feedback
from finance_monitor.models import Document, Sentiment
from finance_monitor.services.classification import (
    APP,
    SENTIMENT_TASK,
    TOPIC_TASK,
    document_text,
    topic_check,
)
from finance_monitor.services.trends import document_classified

TASKS = (TOPIC_TASK, SENTIMENT_TASK)


def _one_hot(sentiment: str) -> dict[str, float]:
    return {s: 1.0 if s == sentiment else 0.0 for s in Sentiment.values}


def document_correct(
    *, organisation, document_id: int, topic: str | None = None, sentiment: str | None = None
) -> Document:
    """Store an analyst's topic and/or sentiment for a document and move its trend counts."""
    topic = (topic or "").strip() or None
    if topic is None and sentiment is None:
        raise InvalidInput("Give a topic, a sentiment or both.", details={"fields": ["topic", "sentiment"]})
    if sentiment is not None and sentiment not in Sentiment.values:
        raise InvalidInput(
            f"sentiment must be one of: {', '.join(Sentiment.values)}.", details={"field": "sentiment"}
        )
    if topic is not None:
        topic_check(organisation=organisation, topic=topic)
        if len(topic) > 100:
            raise InvalidInput("topic must be 1 to 100 characters.", details={"field": "topic"})
    with transaction.atomic():
        document = Document.objects.for_org(organisation).select_for_update().filter(pk=document_id).first()
        if document is None:
            raise NotFound("No such document.")
        if document.duplicate_of_id is not None:
            raise InvalidInput(
                f"This document is a copy of document {document.duplicate_of_id}; copies are not classified "
                "(their original is): correct the original.",
                details={"duplicate_of": document.duplicate_of_id},
            )
        if document.classified_at is None and (topic is None or sentiment is None):
            raise InvalidInput(
                "This document is not classified yet: give both its topic and its sentiment.",
                details={"fields": ["topic", "sentiment"]},
            )
        model_answer = document.model_answer
        if model_answer is None and document.classified_at is not None and document.corrected_at is None:
            model_answer = {  # the model's answer, kept from the first correction on
                "topic": document.topic,
                "topic_probability": document.topic_probability,
                "sentiment": document.sentiment,
                "probabilities": document.sentiment_probabilities,
                "score": document.score,
                "classified_at": document.classified_at.isoformat(),
            }
        if sentiment:
            probabilities = _one_hot(sentiment)
        else:  # the topic alone changes: the sentiment stays as it was
            probabilities = document.sentiment_probabilities or _one_hot(document.sentiment)
        document_classified(
            organisation=organisation,
            document_id=document.pk,
            topic=topic or document.topic,
            probabilities=probabilities,
            topic_probability=1.0 if topic else document.topic_probability,
        )
        Document.objects.for_org(organisation).filter(pk=document.pk).update(
            corrected_topic=topic or document.corrected_topic,
            corrected_sentiment=sentiment or document.corrected_sentiment,
            corrected_at=timezone.now(),
            model_answer=model_answer,
        )
    document.refresh_from_db()
    return document


def corrections_feedback(*, organisation, task: str) -> list[tuple[str, str]]:
    """The corrected documents of ``task`` as (text, label), oldest correction first (a later one wins)."""
    field = "corrected_topic" if task == TOPIC_TASK else "corrected_sentiment"
    corrected = (
        Document.objects.for_org(organisation)
        .exclude(**{field: ""})
        .order_by("corrected_at", "pk")
        .only("title", "text", field)
    )
    return [(document_text(d), getattr(d, field)) for d in corrected]


def corrections_retrain(*, organisation, tasks: tuple[str, ...] = TASKS, created_by=None) -> list:
    """Retrain the active model of each task that has corrections; the training jobs (Conflict: none)."""
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown or not tasks:
        raise InvalidInput(f"task must be one of: {', '.join(TASKS)}.", details={"field": "task"})
    queued = []
    for task in tasks:
        rows = corrections_feedback(organisation=organisation, task=task)
        if not rows:
            continue
        queued.append(
            feedback.model_retrain_from_feedback(
                organisation=organisation,
                app=APP,
                task=task,
                feedback=rows,
                source="with-analyst-corrections",
                config=None,  # the fast model, as the defaults are trained
                created_by=created_by,
            )
        )
    if not queued:
        raise Conflict("No analyst corrections yet: correct documents' topic or sentiment first.")
    return queued
