"""Celery tasks of the finance monitor: thin wrappers over the services (beat entries in product.py)."""

import logging

from celery import shared_task

from core.tenancy.models import Organisation
from finance_monitor.models import Source
from finance_monitor.services import classification, feeds

log = logging.getLogger(__name__)


@shared_task(name="finance_monitor.poll_feeds")
def poll_feeds() -> int:
    """Beat: poll every feed whose schedule is due (each source has its own interval)."""
    polled = 0
    for source_id in feeds.feeds_due():
        poll_feed.delay(source_id)
        polled += 1
    return polled


@shared_task(name="finance_monitor.poll_feed")
def poll_feed(source_id: int) -> str:
    source = Source.all_tenants.select_related("organisation").filter(pk=source_id).first()
    if source is None:
        return "gone"
    poll = feeds.feed_poll(source=source)
    if poll.outcome == "error":
        log.info("feed %s failed: %s", source_id, poll.error)
    return poll.outcome


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
