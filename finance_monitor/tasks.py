"""Celery tasks of the finance monitor: thin wrappers over the services (beat entries in product.py)."""

import logging

from celery import shared_task

from finance_monitor.models import Source
from finance_monitor.services import feeds

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
