"""Celery tasks of the finance monitor: thin wrappers over the services (beat entries in product.py)."""

import logging

from celery import shared_task

from core.tenancy.models import Organisation
from finance_monitor.models import AlertRule, DeliveryState, Source
from finance_monitor.services import alert_delivery, alerts, classification, feeds, near_copies, replay

log = logging.getLogger(__name__)


@shared_task(name="finance_monitor.poll_feeds")
def poll_feeds() -> int:
    """Beat: poll every feed whose schedule is due (each source has its own interval)."""
    polled = 0
    for source_id in feeds.feeds_due():
        poll_feed.delay(source_id)
        polled += 1
    return polled


# the fetch has its own deadline (feeds.DEADLINE_S); the limits bound the rest (parsing, storing): a soft
# limit is recorded as a failed poll by feed_poll, the hard one frees the worker slot whatever happens
@shared_task(name="finance_monitor.poll_feed", soft_time_limit=120, time_limit=150)
def poll_feed(source_id: int) -> str:
    feeds.feed_poll_started(source_id=source_id)
    source = Source.all_tenants.select_related("organisation").filter(pk=source_id).first()
    if source is None:
        return "gone"
    poll = feeds.feed_poll(source=source)
    if poll.outcome == "error":
        log.info("feed %s failed: %s", source_id, poll.error)
    return poll.outcome


@shared_task(name="finance_monitor.evaluate_alerts", time_limit=120)
def evaluate_alerts() -> int:
    """Beat: evaluate every enabled alert rule of every organisation, one task per rule."""
    rule_ids = alerts.alert_rules_enabled()
    for rule_id in rule_ids:
        evaluate_alert_rule.delay(rule_id)
    return len(rule_ids)


@shared_task(name="finance_monitor.evaluate_alert_rule", time_limit=300)
def evaluate_alert_rule(rule_id: int) -> int:
    rule = AlertRule.all_tenants.filter(pk=rule_id, enabled=True).first()
    if rule is None:
        return 0
    return len(alerts.alert_rule_evaluate(rule=rule))


@shared_task(
    bind=True,
    name="finance_monitor.deliver_alert",
    max_retries=alert_delivery.MAX_ATTEMPTS - 1,
    time_limit=120,
)
def deliver_alert(self, alert_id: int, channel: str) -> str:
    """One delivery attempt; a failure that may be retried comes back after the backoff."""
    attempt = self.request.retries + 1
    delivery = alert_delivery.alert_deliver_attempt(alert_id=alert_id, channel=channel, attempt=attempt)
    if delivery is None:
        return "skipped"
    if delivery.state == DeliveryState.RETRYING:
        raise self.retry(countdown=alert_delivery.retry_delay_s(attempt))
    return delivery.state


@shared_task(name="finance_monitor.classify_documents", time_limit=3600, soft_time_limit=3500)
def classify_documents(organisation_id: int) -> dict:
    """Classify an organisation's pending documents (queued on ``infer`` after documents are accepted)."""
    classification.classify_started(organisation_id=organisation_id)
    organisation = Organisation.objects.filter(pk=organisation_id, deleted_at__isnull=True).first()
    if organisation is None:
        return {"classified": 0, "stopped": "gone"}
    run = classification.documents_classify_pending(organisation=organisation)
    if run.stopped.startswith("reached"):  # more than one run's worth: the next run continues
        classification.classify_enqueue(organisation_id=organisation_id)
    return run.as_dict()


@shared_task(name="finance_monitor.classify_pending")
def classify_pending() -> int:
    """Beat: queue classification for every organisation with pending documents."""
    organisations = classification.organisations_with_pending()
    for organisation_id in organisations:
        classification.classify_enqueue(organisation_id=organisation_id)
    return len(organisations)


@shared_task(name="finance_monitor.replay_tick", time_limit=300)
def replay_tick() -> int:
    """Beat: push what has come due in every unfinished replay (the demo's timed feed)."""
    return replay.replays_tick()


@shared_task(name="finance_monitor.prune_near_copy_bands", time_limit=1800)
def prune_near_copy_bands() -> int:
    """Beat, daily: the near-copy index's bands older than the window (services.near_copies)."""
    return near_copies.near_copy_bands_prune()


@shared_task(name=near_copies.BACKFILL_TASK, time_limit=3600)  # default queue
def backfill_near_copy_bands(organisation_id: int | None = None) -> dict:
    """The near-copy bands of the window's originals that have none (services.near_copies), of one
    organisation or, with no id, of all; ``manage.py near_copy_backfill --queue`` sends it
    (``near_copies.near_copy_bands_backfill_enqueue``)."""
    organisation = None
    if organisation_id is not None:
        organisation = Organisation.objects.filter(pk=organisation_id, deleted_at__isnull=True).first()
        if organisation is None:
            return {"stopped": "gone"}
    return near_copies.near_copy_bands_backfill(organisation=organisation)
