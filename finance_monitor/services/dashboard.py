"""What the finance monitor's pages show, built on the selectors: chart series with their empty buckets
filled (a category axis needs every label), the live feed's items and their broadcast, and the CSV export of
a filtered document list.

The live feed: ``documents_classified_broadcast`` is called by classification inside each batch's
transaction; ``core.realtime.broadcast`` sends one ``fm.documents`` frame to the organisation's
``documents`` group after commit (so a rolled-back batch sends nothing). The page renders the latest
classified documents from the database and polls them as well: the socket only makes them arrive sooner.

The CSV export streams rows from a server-side iterator (constant memory whatever the number of documents)
and neutralises spreadsheet formulas: a text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return gets a leading ``'`` (OWASP's CSV injection advice), so a hostile headline is shown, never
evaluated. Numbers the monitor computed (scores, probabilities) are written as numbers.
"""

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet, Sum
from django.utils import timezone

from core.errors import InvalidInput
from core.realtime import broadcast, org_group
from finance_monitor.models import Document, Entity, TrendBucket
from finance_monitor.services.trends import GRANULARITIES, bucket_start, trend_series

# buckets a chart may span per granularity (the first is the default)
SPANS: dict[str, tuple[int, ...]] = {"hour": (48, 24, 168), "day": (30, 90, 365)}
WIDTH = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
TOP_TOPICS = 6
FEED_LENGTH = 20  # items the live feed shows
FEED_FRAME_MAX = 50  # documents one frame carries (a batch may hold more; the latest ones)
FEED_TEXT_CHARS = 280
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ChartTarget:
    value: str  # "all", "topic:<name>" or "entity:<id>"
    label: str
    dimension: str
    key: str


def chart_targets(*, organisation) -> list[ChartTarget]:
    """Everything a chart can follow: all documents, each topic seen in the trends, each watch-list entry."""
    topics = (
        TrendBucket.objects.for_org(organisation)
        .filter(dimension="topic", volume__gt=0)
        .values_list("key", flat=True)
        .distinct()
        .order_by("key")
    )
    targets = [ChartTarget("all", "All documents", "all", "")]
    targets += [ChartTarget(f"topic:{t}", f"Topic: {t}", "topic", t) for t in topics]
    targets += [
        ChartTarget(f"entity:{e.pk}", f"Watch-list: {e.name}", "entity", str(e.pk))
        for e in Entity.objects.for_org(organisation).order_by("name")
    ]
    return targets


def _window(granularity: str, span: int, now: datetime | None) -> tuple[datetime, datetime, list[datetime]]:
    if granularity not in GRANULARITIES:
        raise InvalidInput("granularity must be one of: hour, day.", details={"field": "granularity"})
    if span not in SPANS[granularity]:
        choices = ", ".join(str(s) for s in SPANS[granularity])
        raise InvalidInput(f"span must be one of: {choices}.", details={"field": "span"})
    width = WIDTH[granularity]
    end = bucket_start(now or timezone.now(), granularity) + width
    start = end - width * span
    return start, end, [start + width * i for i in range(span)]


def _label(at: datetime, granularity: str) -> str:
    return at.strftime("%m-%d %H:00") if granularity == "hour" else at.strftime("%Y-%m-%d")


def trend_chart(
    *, organisation, target: ChartTarget, granularity: str, span: int, now: datetime | None = None
) -> dict[str, Any]:
    """One target's buckets over the span, every bucket present: volume, negative/positive share, mean score
    (shares and score are null where a bucket is empty)."""
    start, end, starts = _window(granularity, span, now)
    points = {
        p["bucket_start"]: p
        for p in trend_series(
            organisation=organisation,
            dimension=target.dimension,
            key=target.key,
            granularity=granularity,
            since=start,
            until=end,
        )
    }

    def column(name: str, empty: float | None) -> list:
        return [round(points[s][name], 4) if s in points else empty for s in starts]

    return {
        "target": target.label,
        "granularity": granularity,
        "labels": [_label(s, granularity) for s in starts],
        "volume": column("volume", 0),
        "negative_share": column("negative_share", None),
        "positive_share": column("positive_share", None),
        "mean_score": column("mean_score", None),
    }


def topic_volume_chart(
    *, organisation, granularity: str, span: int, now: datetime | None = None, top: int = TOP_TOPICS
) -> dict[str, Any]:
    """Volume per bucket of the span's ``top`` busiest topics, one series each (a stacked chart)."""
    start, end, starts = _window(granularity, span, now)
    rows = TrendBucket.objects.for_org(organisation).filter(
        dimension="topic", granularity=granularity, bucket_start__gte=start, bucket_start__lt=end
    )
    busiest = list(
        rows.values("key").annotate(total=Sum("volume")).filter(total__gt=0).order_by("-total", "key")[:top]
    )
    keys = [row["key"] for row in busiest]
    counts = {
        (key, at): volume
        for key, at, volume in rows.filter(key__in=keys).values_list("key", "bucket_start", "volume")
    }
    return {
        "labels": [_label(s, granularity) for s in starts],
        "series": [{"topic": key, "volume": [counts.get((key, s), 0) for s in starts]} for key in keys],
    }


# --- the live feed ------------------------------------------------------------------------------------


def feed_item(document: Document) -> dict[str, Any]:
    text = document.title or document.text
    return {
        "id": document.pk,
        "occurred_at": document.occurred_at.isoformat(),
        "classified_at": document.classified_at.isoformat() if document.classified_at else None,
        "source": document.source.name if document.source_id and document.source else "",
        "text": text[:FEED_TEXT_CHARS],
        "url": document.url,
        "topic": document.topic,
        "sentiment": document.sentiment,
        "score": None if document.score is None else round(document.score, 3),
    }


def feed_latest(*, organisation, limit: int = FEED_LENGTH) -> list[dict[str, Any]]:
    """The organisation's most recently classified documents, newest first."""
    documents = (
        Document.objects.for_org(organisation)
        .filter(classified_at__isnull=False)
        .select_related("source")
        .order_by("-classified_at", "-id")[:limit]
    )
    return [feed_item(d) for d in documents]


def documents_classified_broadcast(*, organisation, document_ids: list[int]) -> None:
    """Inside the batch's transaction: the batch's documents (the latest ``FEED_FRAME_MAX``) to the
    organisation's live feed, sent after commit."""
    if not document_ids:
        return
    documents = (
        Document.objects.for_org(organisation)
        .filter(pk__in=document_ids)
        .select_related("source")
        .order_by("-classified_at", "-id")[:FEED_FRAME_MAX]
    )
    broadcast(
        group=org_group(organisation.pk, "documents"),
        event_type="fm.documents",
        payload={"documents": [feed_item(d) for d in documents]},
    )


# --- CSV export ---------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "id",
    "occurred_at",
    "received_at",
    "source",
    "title",
    "text",
    "url",
    "author",
    "topic",
    "topic_probability",
    "sentiment",
    "score",
    "p_positive",
    "p_neutral",
    "p_negative",
    "corrected",
    "duplicate_of",
    "copies",
)


def csv_safe(value: str) -> str:
    """A text cell a spreadsheet will not evaluate as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


class _Echo:
    def write(self, value: str) -> str:
        return value


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _csv_row(document: Document) -> list[str]:
    p = document.sentiment_probabilities or {}
    return [
        str(document.pk),
        document.occurred_at.isoformat(),
        document.received_at.isoformat(),
        csv_safe(document.source.name if document.source else ""),
        csv_safe(document.title),
        csv_safe(document.text),
        csv_safe(document.url),
        csv_safe(document.author),
        csv_safe(document.topic),
        _number(document.topic_probability),
        document.sentiment,
        _number(document.score),
        _number(p.get("positive")),
        _number(p.get("neutral")),
        _number(p.get("negative")),
        "yes" if document.corrected_at else "no",
        str(document.duplicate_of_id or ""),
        str(document.copies),
    ]


def documents_csv_lines(*, documents: QuerySet) -> Iterator[str]:
    """The CSV lines (header first) of ``documents``: a tenant-scoped ``selectors.document_list``."""
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for document in documents.iterator(chunk_size=1000):
        yield writer.writerow(_csv_row(document))


def topic_choices(*, organisation) -> list[str]:
    """The topics a page offers: the active topic model's labels and every topic seen in the trends."""
    from core.registry.services.common import active_version
    from finance_monitor.services.classification import APP, TOPIC_TASK

    version = active_version(organisation, APP, TOPIC_TASK)
    seen = {t.key for t in chart_targets(organisation=organisation) if t.dimension == "topic"}
    return sorted(seen | set(version.labels if version is not None and version.labels else []))
