"""Trend buckets, kept up to date as documents are classified.

``documents_classified`` stores a batch's classifications and adds each document to its hour and day buckets
(per topic, per watch-list entry it mentions, and overall) with one multi-row ``INSERT ... ON CONFLICT DO
UPDATE`` that adds the batch's summed counts, inside the transaction that locks the documents' rows
(``document_classified`` is the same for one document). What was added is kept on each document
(``counted``): a retried call with the same result changes nothing, and a re-classification takes the old
contribution out before adding the new one, so every document counts once. A worker that dies mid-batch
commits none of it: the retried batch counts each document once.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import timezone

from core.errors import InvalidInput, NotFound
from core.statements import rows_update
from finance_monitor.models import Alert, Document, Mention, Sentiment, TrendBucket

GRANULARITIES = ("hour", "day")


def bucket_start(at: datetime, granularity: str) -> datetime:
    at = at.astimezone(UTC)
    at = at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if granularity == "day" else at


@dataclass(frozen=True)
class Classified:
    """One document's classification, as ``documents_classified`` records it."""

    document_id: int
    topic: str
    probabilities: Mapping[str, float]  # positive, neutral, negative
    topic_probability: float | None = None


def _check(item: Classified) -> None:
    missing = {s.value for s in Sentiment} - set(item.probabilities)
    if missing:
        raise InvalidInput(f"probabilities lack {sorted(missing)}")
    if not item.topic or len(item.topic) > 100:
        raise InvalidInput("topic must be 1 to 100 characters.")


def document_classified(
    *,
    organisation,
    document_id: int,
    topic: str,
    probabilities: dict[str, float],
    topic_probability: float | None = None,
) -> bool:
    """Record a document's topic and sentiment and count it in the trends; False if nothing changed."""
    item = Classified(document_id, topic, probabilities, topic_probability)
    return bool(documents_classified(organisation=organisation, items=[item]))


def documents_classified(*, organisation, items: Sequence[Classified]) -> list[int]:
    """Record a batch of classifications and count them in the trends: the documents' rows locked in one
    query, their mentions read in one, every bucket they move changed by one multi-row upsert that adds (the
    batch's changes summed per bucket first: one statement may touch a row once), and the documents written
    back in one ``UPDATE``. Returns the ids whose record changed (a retry with the same result changes
    nothing, see the module docstring)."""
    for item in items:
        _check(item)
    if not items:
        return []
    ids = [item.document_id for item in items]
    with transaction.atomic():
        documents = {
            d.pk: d
            for d in Document.objects.for_org(organisation)
            .select_for_update()
            .filter(pk__in=ids)
            .order_by("pk")
        }
        if len(documents) < len(set(ids)):
            raise NotFound("No such document.")
        entities: dict[int, list[int]] = {}
        for document_id, entity_id in (
            Mention.objects.for_org(organisation)
            .filter(document_id__in=ids)
            .values_list("document_id", "entity_id")
        ):
            entities.setdefault(document_id, []).append(entity_id)
        deltas: dict[tuple, list[float]] = {}
        changed, now = [], timezone.now()
        for item in items:
            document = documents[item.document_id]
            contribution = _record(document, item, sorted(entities.get(item.document_id, [])), now)
            if contribution is None:
                continue
            if document.counted:
                _collect(deltas, document.counted, -1)
            _collect(deltas, contribution, +1)
            document.counted = contribution
            changed.append(document)
        _upsert(organisation.pk, deltas)
        rows_update(changed, RECORDED_FIELDS)  # one UPDATE ... FROM (VALUES ...) on PostgreSQL
    return [d.pk for d in changed]


RECORDED_FIELDS = [
    "topic",
    "topic_probability",
    "sentiment",
    "score",
    "sentiment_probabilities",
    "classified_at",
    "counted",
    "updated_at",
]


def _record(document: Document, item: Classified, entities: list[int], now: datetime) -> dict | None:
    """Set the classification on ``document`` (in memory); its new trend contribution, None if unchanged."""
    probabilities = item.probabilities
    sentiment = max(Sentiment.values, key=lambda s: probabilities[s])
    score = float(probabilities["positive"]) - float(probabilities["negative"])
    contribution = {
        "topic": item.topic,
        "sentiment": sentiment,
        "score": round(score, 6),
        "entities": entities,
        "at": document.occurred_at.isoformat(),
    }
    if document.counted == contribution:
        return None
    document.topic, document.topic_probability = item.topic, item.topic_probability
    document.sentiment, document.score = sentiment, score
    document.sentiment_probabilities = {k: float(probabilities[k]) for k in Sentiment.values}
    document.classified_at = document.updated_at = now
    return contribution


def _collect(deltas: dict[tuple, list[float]], contribution: dict, sign: int) -> None:
    """Add one document's contribution (``sign`` +1 or -1) to the per-bucket sums of a batch."""
    at = datetime.fromisoformat(contribution["at"])
    keys = [("all", ""), ("topic", contribution["topic"])] + [
        ("entity", str(e)) for e in contribution["entities"]
    ]
    sentiment = contribution["sentiment"]
    add = [
        sign,
        sign * (sentiment == "negative"),
        sign * (sentiment == "neutral"),
        sign * (sentiment == "positive"),
        sign * contribution["score"],
    ]
    for dimension, key in keys:
        for granularity in GRANULARITIES:
            sums = deltas.setdefault(
                (dimension, key, granularity, bucket_start(at, granularity)), [0, 0, 0, 0, 0.0]
            )
            for i, value in enumerate(add):
                sums[i] += value


def _upsert(organisation_id: int, deltas: dict[tuple, list[float]]) -> None:
    """One ``INSERT ... ON CONFLICT DO UPDATE`` that adds every bucket's summed change."""
    if not deltas:
        return
    # as the ORM writes them (SQLite keeps naive UTC text: an aware value's "+00:00" would compare apart)
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(timezone.now())
    rows = [
        (organisation_id, dimension, key, granularity, adapt(start), *sums, now, now)
        for (dimension, key, granularity, start), sums in sorted(deltas.items())  # one order: no deadlock
    ]
    table = TrendBucket._meta.db_table
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    sql = (
        f"INSERT INTO {table} (organisation_id, dimension, key, granularity, bucket_start, volume, negative,"  # noqa: S608
        f" neutral, positive, score_sum, created_at, updated_at) VALUES {placeholders}"
        " ON CONFLICT (organisation_id, dimension, key, granularity, bucket_start) DO UPDATE SET"
        f" volume = {table}.volume + EXCLUDED.volume, negative = {table}.negative + EXCLUDED.negative,"
        f" neutral = {table}.neutral + EXCLUDED.neutral, positive = {table}.positive + EXCLUDED.positive,"
        f" score_sum = {table}.score_sum + EXCLUDED.score_sum, updated_at = EXCLUDED.updated_at"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row])


def trend_series(
    *, organisation, dimension: str, key: str, granularity: str, since: datetime, until: datetime
) -> list[dict]:
    """The non-empty buckets in [since, until): volume, negative/positive share and mean score."""
    if dimension not in ("all", "topic", "entity"):
        raise InvalidInput("dimension must be one of: all, topic, entity.")
    if granularity not in GRANULARITIES:
        raise InvalidInput("granularity must be one of: hour, day.")
    rows = (
        TrendBucket.objects.for_org(organisation)
        .filter(dimension=dimension, key=key if dimension != "all" else "", granularity=granularity)
        .filter(bucket_start__gte=since, bucket_start__lt=until, volume__gt=0)
        .order_by("bucket_start")
        .values_list("bucket_start", "volume", "negative", "neutral", "positive", "score_sum")
    )
    return [
        {
            "bucket_start": start,
            "volume": volume,
            "negative": negative,
            "neutral": neutral,
            "positive": positive,
            "negative_share": negative / volume,
            "positive_share": positive / volume,
            "mean_score": score_sum / volume,
        }
        for start, volume, negative, neutral, positive, score_sum in rows
    ]


def trend_buckets_remap(*, organisation, ids: Mapping[str, Mapping[int, int]]) -> None:
    """After an organisation import (``core.privacy``): per-entity buckets name their entity by id in
    ``key``; point them at the entity's new id (through a temporary key: two buckets may swap ids)."""
    entities = ids.get("finance_monitor.Entity", {})
    buckets = TrendBucket.objects.for_org(organisation).filter(dimension="entity")
    stale = [b for b in buckets if b.key.isdigit() and int(b.key) in entities]
    for bucket in stale:
        bucket.key = f"~{entities[int(bucket.key)]}"
    TrendBucket.all_tenants.bulk_update(stale, ["key"])
    for bucket in stale:
        bucket.key = bucket.key[1:]
    TrendBucket.all_tenants.bulk_update(stale, ["key"])
    # alerts on a watch-list entry keep the key of the buckets they tested (no uniqueness on it: one pass)
    alerts = [a for a in Alert.objects.for_org(organisation).filter(dimension="entity") if a.key.isdigit()]
    for alert in alerts:
        alert.key = str(entities.get(int(alert.key), alert.key))
    Alert.all_tenants.bulk_update(alerts, ["key"])
