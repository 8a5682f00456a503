"""Reads of the finance monitor: documents with filters, sources with their health."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from finance_monitor.models import Document, FeedPoll, Source, SourceKind
from finance_monitor.services.feeds import FAILING_AFTER

COPIES = ("hide", "show", "only")  # the document list's ``copies`` filter


def document_list(
    *,
    organisation,
    topic: str = "",
    sentiment: str = "",
    source_id: int | None = None,
    entity_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    q: str = "",
    classified: bool | None = None,
    alert_id: int | None = None,
    copies: str = "hide",
    copy_of: int | None = None,
) -> QuerySet:
    """The organisation's documents matching every filter given. ``copies``: ``hide`` (the default: originals
    only), ``show`` (copies too) or ``only``; ``copy_of``: the copies of that original (any ``copies``)."""
    docs = Document.objects.for_org(organisation).select_related("source")
    if copy_of is not None:
        docs = docs.filter(duplicate_of_id=copy_of)
    elif copies == "hide":
        docs = docs.filter(duplicate_of__isnull=True)
    elif copies == "only":
        docs = docs.filter(duplicate_of__isnull=False)
    if alert_id is not None:  # an alert's stored evidence
        from finance_monitor.models import AlertEvidence

        evidence = AlertEvidence.objects.for_org(organisation).filter(alert_id=alert_id)
        docs = docs.filter(pk__in=evidence.values("document_id"))
    if topic:
        docs = docs.filter(topic=topic)
    if sentiment:
        docs = docs.filter(sentiment=sentiment)
    if source_id is not None:
        docs = docs.filter(source_id=source_id)
    if entity_id is not None:
        docs = docs.filter(mentions__entity_id=entity_id)
    if since is not None:
        docs = docs.filter(occurred_at__gte=since)
    if until is not None:
        docs = docs.filter(occurred_at__lt=until)
    if q:
        docs = docs.filter(Q(text__icontains=q) | Q(title__icontains=q))
    if classified is not None:
        docs = docs.filter(classified_at__isnull=not classified)
    return docs.order_by("-occurred_at", "-id")


def document_get(*, organisation, document_id: int) -> Document | None:
    return Document.objects.for_org(organisation).filter(pk=document_id).first()


def source_list(*, organisation) -> QuerySet:
    return Source.objects.for_org(organisation).order_by("name")


def source_get(*, organisation, source_id: int) -> Source | None:
    return Source.objects.for_org(organisation).filter(pk=source_id).first()


def source_polls(*, organisation, source_id: int, limit: int = 20) -> list[FeedPoll]:
    return list(FeedPoll.objects.for_org(organisation).filter(source_id=source_id)[:limit])


@dataclass
class Health:
    status: str  # ok, quiet, failing, new, disabled
    warning: str
    documents_per_day: list[tuple[str, int]]  # (day, documents received), the last ``days`` days


def source_health(*, source: Source, now: datetime | None = None, days: int = 7) -> Health:
    now = now or timezone.now()
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    from django.db.models.functions import TruncDate

    counts = dict(
        Document.objects.for_org(source.organisation_id)
        .filter(source=source, received_at__gte=start)
        .annotate(day=TruncDate("received_at"))
        .values_list("day")
        .annotate(n=Count("id"))
        .values_list("day", "n")
    )
    per_day = [
        (str((start + timedelta(days=i)).date()), counts.get((start + timedelta(days=i)).date(), 0))
        for i in range(days)
    ]
    if not source.enabled:
        return Health("disabled", "", per_day)
    if source.kind == SourceKind.FEED and source.consecutive_failures >= FAILING_AFTER:
        warning = f"{source.consecutive_failures} polls in a row failed; last: {source.last_error}"
        return Health("failing", warning, per_day)
    if source.kind == SourceKind.FEED and source.last_success_at is None:
        # never fetched successfully: not "ok" (nothing shows it works), failing as soon as a poll failed
        if source.consecutive_failures:
            return Health("failing", f"no poll has succeeded yet; last: {source.last_error}", per_day)
        return Health("new", "waiting for the first poll", per_day)
    reference = source.last_document_at or (source.created_at if source.kind == SourceKind.FEED else None)
    if reference is None:
        return Health("new", "", per_day)
    quiet_for = now - reference
    if quiet_for.total_seconds() > source.quiet_after_s:
        hours = int(quiet_for.total_seconds() // 3600)
        return Health("quiet", f"no new document for {hours} h", per_day)
    return Health("ok", "", per_day)


def entity_list(*, organisation) -> QuerySet:
    from finance_monitor.models import Entity

    return Entity.objects.for_org(organisation).order_by("name")


def entity_get(*, organisation, entity_id: int):
    from finance_monitor.models import Entity

    return Entity.objects.for_org(organisation).filter(pk=entity_id).first()


# --- alerts -------------------------------------------------------------------------------------------


def alert_rule_list(*, organisation) -> QuerySet:
    from finance_monitor.models import AlertRule

    return AlertRule.objects.for_org(organisation).select_related("entity").order_by("name")


def alert_rule_get(*, organisation, rule_id: int):
    from finance_monitor.models import AlertRule

    return AlertRule.objects.for_org(organisation).select_related("entity").filter(pk=rule_id).first()


def alert_list(
    *,
    organisation,
    rule_id: int | None = None,
    kind: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet:
    """Alerts, newest first, with filters on the rule, the kind and the bucket's time."""
    from finance_monitor.models import Alert

    alerts = Alert.objects.for_org(organisation).select_related("rule")
    if rule_id is not None:
        alerts = alerts.filter(rule_id=rule_id)
    if kind:
        alerts = alerts.filter(kind=kind)
    if since is not None:
        alerts = alerts.filter(bucket_start__gte=since)
    if until is not None:
        alerts = alerts.filter(bucket_start__lt=until)
    return alerts.order_by("-fired_at", "-id")


def alert_get(*, organisation, alert_id: int):
    from finance_monitor.models import Alert

    return Alert.objects.for_org(organisation).select_related("rule").filter(pk=alert_id).first()


def alert_evidence(*, organisation, alert) -> QuerySet:
    """The documents stored as the alert's evidence, most negative first."""
    from finance_monitor.models import AlertEvidence

    evidence = AlertEvidence.objects.for_org(organisation).filter(alert=alert).values("document_id")
    return (
        Document.objects.for_org(organisation)
        .filter(pk__in=evidence)
        .select_related("source")
        .order_by("score", "-occurred_at", "id")
    )


def delivery_list(*, organisation, alert_id: int | None = None, rule_id: int | None = None) -> QuerySet:
    from finance_monitor.models import Delivery

    deliveries = Delivery.objects.for_org(organisation)
    if alert_id is not None:
        deliveries = deliveries.filter(alert_id=alert_id)
    if rule_id is not None:
        deliveries = deliveries.filter(rule_id=rule_id)
    return deliveries.order_by("-created_at", "-id")


def classification_status(*, organisation) -> dict:
    """The active topic and sentiment models, pending and corrected documents, and default trainings."""
    from core.jobs.models import TrainingJob
    from core.registry.services.common import active_version
    from finance_monitor.services.classification import APP, SENTIMENT_TASK, TOPIC_TASK
    from finance_monitor.services.defaults import JOB_KIND

    docs = Document.objects.for_org(organisation)
    return {
        "pending": docs.filter(classified_at__isnull=True, duplicate_of__isnull=True).count(),
        "corrected": docs.filter(corrected_at__isnull=False).count(),
        "topic": active_version(organisation, APP, TOPIC_TASK),
        "sentiment": active_version(organisation, APP, SENTIMENT_TASK),
        "default_jobs": list(
            TrainingJob.objects.for_org(organisation)
            .filter(kind=JOB_KIND)
            .order_by("-created_at", "-id")[:10]
        ),
    }
