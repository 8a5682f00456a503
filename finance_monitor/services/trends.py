"""Trend buckets, kept up to date as documents are classified.

``document_classified`` stores the classification and adds the document to its hour and day buckets
(per topic, per watch-list entry it mentions, and overall) with one ``INSERT ... ON CONFLICT DO UPDATE``
that adds, inside the transaction that locks the document row. What was added is kept on the document
(``counted``): a retried call with the same result changes nothing, and a re-classification takes the old
contribution out before adding the new one, so every document counts once.
"""

from collections.abc import Mapping
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import timezone

from core.errors import InvalidInput, NotFound
from finance_monitor.models import Alert, Document, Mention, Sentiment, TrendBucket

GRANULARITIES = ("hour", "day")


def bucket_start(at: datetime, granularity: str) -> datetime:
    at = at.astimezone(UTC)
    at = at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if granularity == "day" else at


def document_classified(
    *,
    organisation,
    document_id: int,
    topic: str,
    probabilities: dict[str, float],
    topic_probability: float | None = None,
) -> bool:
    """Record a document's topic and sentiment and count it in the trends; False if nothing changed."""
    missing = {s.value for s in Sentiment} - set(probabilities)
    if missing:
        raise InvalidInput(f"probabilities lack {sorted(missing)}")
    if not topic or len(topic) > 100:
        raise InvalidInput("topic must be 1 to 100 characters.")
    sentiment = max(Sentiment.values, key=lambda s: probabilities[s])
    score = float(probabilities["positive"]) - float(probabilities["negative"])
    with transaction.atomic():
        document = Document.objects.for_org(organisation).select_for_update().filter(pk=document_id).first()
        if document is None:
            raise NotFound("No such document.")
        entities = sorted(
            Mention.objects.for_org(organisation)
            .filter(document_id=document_id)
            .values_list("entity_id", flat=True)
        )
        contribution = {
            "topic": topic,
            "sentiment": sentiment,
            "score": round(score, 6),
            "entities": entities,
            "at": document.occurred_at.isoformat(),
        }
        if document.counted == contribution:
            return False
        if document.counted:
            _add(organisation.pk, document.counted, -1)
        _add(organisation.pk, contribution, +1)
        document.topic, document.topic_probability = topic, topic_probability
        document.sentiment, document.score = sentiment, score
        document.sentiment_probabilities = {k: float(probabilities[k]) for k in Sentiment.values}
        document.classified_at, document.counted = timezone.now(), contribution
        document.save(
            update_fields=[
                "topic",
                "topic_probability",
                "sentiment",
                "score",
                "sentiment_probabilities",
                "classified_at",
                "counted",
                "updated_at",
            ]
        )
    return True


def _add(organisation_id: int, contribution: dict, sign: int) -> None:
    at = datetime.fromisoformat(contribution["at"])
    keys = [("all", ""), ("topic", contribution["topic"])] + [
        ("entity", str(e)) for e in contribution["entities"]
    ]
    sentiment = contribution["sentiment"]
    # as the ORM writes them (SQLite keeps naive UTC text: an aware value's "+00:00" would compare apart)
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(timezone.now())
    rows = []
    for dimension, key in keys:
        for granularity in GRANULARITIES:
            rows.append(
                (
                    organisation_id,
                    dimension,
                    key,
                    granularity,
                    adapt(bucket_start(at, granularity)),
                    sign,
                    sign * (sentiment == "negative"),
                    sign * (sentiment == "neutral"),
                    sign * (sentiment == "positive"),
                    sign * contribution["score"],
                    now,
                    now,
                )
            )
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
