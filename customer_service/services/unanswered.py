"""Unanswered questions grouped by meaning: what visitors asked that the bot could not answer.

An unanswered question is a visitor's message (not a click on a suggestion, not a request for a person)
that the bot's next word answered with a hand-off, a request to rephrase, or suggestions the visitor then
turned down ("none of these"). The ``MAX_QUESTIONS`` most recent in the range are embedded with the
organisation's retrieval embedder (``core.vectors.texts_embed``: its fine-tuned version, else the base
encoder) and grouped by average-linkage agglomerative clustering on cosine distance, cut where the mean
similarity within a group would fall below ``SIMILARITY``. Each group comes with its size, up to
``EXAMPLES`` texts (most recent first) and the intent the model guessed most often for them, so that a
tenant can add the answer (a template for that intent, or an article). The grouping is cached for
``CACHE_SECONDS`` per set of texts and model: the same page shown again does not embed them again.
"""

import hashlib
from collections import Counter
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db.models import OuterRef, Q, Subquery
from django.db.models.fields.json import KT

from core.vectors import texts_embed
from customer_service.models import AnswerSource, Message, Sender
from customer_service.services.analytics import Period
from customer_service.services.answering import HUMAN_REQUEST
from customer_service.services.common import APP, RETRIEVAL_TASK
from customer_service.services.suggestions import NONE_OF_THESE

MAX_QUESTIONS = 500
SIMILARITY = 0.55  # mean cosine within a group (MiniLM: paraphrases ~0.6-0.9, unrelated questions < 0.3)
EXAMPLES = 3
CACHE_SECONDS = 15 * 60


def unanswered_questions(*, organisation, period: Period, limit: int = MAX_QUESTIONS) -> list[dict[str, Any]]:
    """The most recent unanswered questions of conversations started in ``period``: id, text, the intent the
    model guessed (may be empty), newest first."""
    later = (
        Message.objects.for_org(organisation)
        .filter(conversation=OuterRef("conversation"), pk__gt=OuterRef("pk"))
        .exclude(sender=Sender.VISITOR)
        .order_by("pk")
    )
    rows = (
        Message.objects.for_org(organisation)
        .filter(
            sender=Sender.VISITOR,
            conversation__created_at__gte=period.since,
            conversation__created_at__lt=period.until,
        )
        .exclude(source=AnswerSource.CHOICE)
        .annotate(
            next_source=Subquery(later.values("source")[:1]),
            # the key as text (KT): compared as JSON, "none" never matched on SQLite
            next_chosen=Subquery(later.annotate(chosen=KT("suggestions__chosen")).values("chosen")[:1]),
        )
        .filter(
            Q(next_source__in=(AnswerSource.HANDOFF, AnswerSource.REPHRASE))
            | Q(next_source=AnswerSource.SUGGESTIONS, next_chosen=NONE_OF_THESE)
        )
        .order_by("-created_at", "-pk")
        .values("pk", "text", "intent")
    )
    found = []
    for row in rows.iterator(chunk_size=200):
        if HUMAN_REQUEST.search(row["text"]):
            continue
        found.append({"id": row["pk"], "text": row["text"], "intent": row["intent"]})
        if len(found) >= limit:
            break
    return found


def cluster_vectors(vectors: np.ndarray, *, similarity: float = SIMILARITY) -> list[int]:
    """A group number per row of ``vectors`` (unit rows): average-linkage agglomerative clustering on cosine
    distance, cut at ``1 - similarity``. Groups are numbered by first appearance."""
    n = len(vectors)
    if n == 0:
        return []
    if n == 1:
        return [0]
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    distances = np.clip(pdist(np.asarray(vectors, dtype=np.float64), metric="cosine"), 0.0, 2.0)
    labels = fcluster(linkage(distances, method="average"), t=1.0 - similarity, criterion="distance")
    renumber: dict[int, int] = {}
    return [renumber.setdefault(int(label), len(renumber)) for label in labels]


def _cache_key(organisation, model: str, questions: list[dict[str, Any]]) -> str:
    digest = hashlib.sha256()
    for question in questions:
        digest.update(f"{question['id']}\x00{question['text']}\x00".encode())
    return f"cs-unanswered:{organisation.pk}:{model}:{SIMILARITY}:{digest.hexdigest()}"


def unanswered_clusters(*, organisation, period: Period) -> list[dict[str, Any]]:
    """The unanswered questions of ``period`` grouped by meaning, largest group first: ``count``,
    ``examples`` (up to ``EXAMPLES`` texts), ``intent`` (the model's most frequent guess, or "")."""
    questions = unanswered_questions(organisation=organisation, period=period)
    if not questions:
        return []
    from core.vectors import current_model

    model = current_model(organisation=organisation, app=APP, task=RETRIEVAL_TASK)
    key = _cache_key(organisation, model, questions)
    cached = cache.get(key)
    if cached is not None:
        return cached
    embedded = texts_embed(
        organisation=organisation, app=APP, task=RETRIEVAL_TASK, texts=[q["text"] for q in questions]
    )
    labels = cluster_vectors(embedded.vectors)
    groups: dict[int, list[dict[str, Any]]] = {}
    for question, label in zip(questions, labels, strict=True):
        groups.setdefault(label, []).append(question)
    clusters = [_cluster(members) for members in groups.values()]
    clusters.sort(key=lambda c: -c["count"])  # stable: among equals, the most recent group first
    cache.set(key, clusters, CACHE_SECONDS)
    return clusters


def _cluster(members: list[dict[str, Any]]) -> dict[str, Any]:
    examples: list[str] = []
    for member in members:  # newest first; the same text asked twice is shown once
        if member["text"] not in examples:
            examples.append(member["text"])
        if len(examples) == EXAMPLES:
            break
    guesses = Counter(m["intent"] for m in members if m["intent"])
    return {
        "count": len(members),
        "examples": examples,
        "intent": guesses.most_common(1)[0][0] if guesses else "",
        "message_ids": [m["id"] for m in members],
    }
