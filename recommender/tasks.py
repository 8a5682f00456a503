"""Celery tasks of the recommender: thin shells over the services."""

from celery import shared_task

from core.tenancy.models import Organisation
from recommender.services import experiments, text


@shared_task(name=text.EMBED_TASK_NAME, time_limit=3600, soft_time_limit=3500)
def embed_items(organisation_id: int) -> dict:
    """Embed an organisation's new or changed items (queued on ``infer`` after a catalogue upsert)."""
    text.items_embed_started(organisation_id=organisation_id)
    organisation = Organisation.objects.filter(pk=organisation_id, deleted_at__isnull=True).first()
    if organisation is None:
        return {"embedded": 0, "stopped": "gone"}
    return {"embedded": text.items_embed_pending(organisation=organisation)}


@shared_task(name="recommender.embed_pending")
def embed_pending() -> int:
    """Beat: queue an embedding run for every organisation with items left without a vector."""
    organisations = text.organisations_with_items_to_embed()
    for organisation_id in organisations:
        text.items_embed_enqueue(organisation_id=organisation_id)
    return len(organisations)


@shared_task(name="recommender.prune_impressions", time_limit=1800)
def prune_impressions() -> int:
    """Beat, daily: experiment impressions older than the retention (services.experiments)."""
    return experiments.impressions_prune()
