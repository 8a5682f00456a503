"""The catalogue's text model tuned on behaviour: a LoRA adapter on the shared encoder, trained on the items
customers take one after another (``recommender``/``item_text``, the platform's embedding kind).

``item_text_tune_start`` queues a ``recommender.item_text_tune`` job on the ``train`` queue (one training job
of the plan) and returns at once: reading every event of a shop is a worker's work, not a web request's. The
job reads the organisation's events, keeps those before the hybrid ranker's validation window (so the ranker,
trained next on the tuned vectors, weighs the text part on behaviour the adapter never saw), turns them into
text pairs (``recommender.pairs``), stores them as a ``pairs`` dataset and goes on, in the same job, with the
platform's own training (``core.registry``'s ``ml.train`` handler) on it: the adapter trained with in-batch
negatives, scored on held-out pairs (MRR) and activated by the registry's promotion rule; once active, every
item is embedded again by it (``text.item_text_activated``, the task's ``on_activate``), and the next training
of the ranker and the two-tower model reads those vectors. Items nobody has bought are embedded by the same
adapter: what it learned from the sold items' texts reaches them through their words. With too little
behaviour the job fails with the count and stores nothing.
"""

from typing import Any

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import InvalidInput
from core.jobs import services as jobs
from core.jobs.models import TrainingJob
from core.registry import services as registry
from recommender import hybrid, pairs
from recommender.models import Item
from recommender.selectors import interactions
from recommender.services import text

MIN_PAIRS = 200
DATASET_NAME = "item-pairs"
TUNE_JOB = "recommender.item_text_tune"


def item_text_pairs(*, organisation, max_pairs: int = pairs.MAX_PAIRS) -> tuple[list[tuple[str, str]], int]:
    """The organisation's behaviour before the ranker's validation window as item-text pairs, and how many
    pairs there were before ``max_pairs`` kept a sample of them."""
    events = interactions(organisation=organisation)
    if not events:
        return [], 0
    before, _ = hybrid.time_split(events, hybrid.HybridConfig())
    rows = Item.objects.for_org(organisation).filter(deleted=False)
    texts = {
        key: text.item_text(title=title, description=description, categories=categories or [])
        for key, title, description, categories in rows.values_list(
            "external_id", "title", "description", "categories"
        ).iterator(chunk_size=2000)
    }
    return pairs.behaviour_pairs(((u, i, t) for u, i, _, t in before), texts, max_pairs=max_pairs)


def item_text_tune_start(*, organisation, created_by=None, max_pairs: int = pairs.MAX_PAIRS):
    """Queue the tuning job (counted as one training job of the plan; refused at once over the plan's
    models quota). The pairs are built in the job."""
    billing.quota_check(organisation=organisation, meter=Meter.MODELS)
    return jobs.job_create(
        organisation=organisation,
        kind=TUNE_JOB,
        params={"app": text.APP, "task": text.TEXT_TASK, "max_pairs": int(max_pairs)},
        created_by=created_by,
        app=text.APP,
    )


def tune_job_handler(job, reporter) -> dict[str, Any]:
    """The ``recommender.item_text_tune`` job: the pairs, their dataset, then the platform's training on it
    (this job's params become an ``ml.train`` job's, so its page and its version read as one)."""
    max_pairs = int((job.params or {}).get("max_pairs") or pairs.MAX_PAIRS)
    reporter.progress(0.0, "Reading the events", force=True)
    found, total = item_text_pairs(organisation=job.organisation, max_pairs=max_pairs)
    if len(found) < MIN_PAIRS:
        raise InvalidInput(
            f"Tuning the item text needs at least {MIN_PAIRS} pairs of different items taken one after the"
            f" other by the same user, before the last weeks the ranker validates on; your events give"
            f" {total}. Send more behaviour first."
        )
    dataset = registry.dataset_from_rows(
        organisation=job.organisation,
        name=DATASET_NAME,
        task="pairs",
        rows=found,
        source="behaviour: items taken one after another",
        split=pairs.SPLIT,
    )
    trains = registry.train_job_params(
        dataset=dataset, app=text.APP, task=text.TEXT_TASK, config=dict(pairs.TUNE_CONFIG)
    )
    job.params = {**(job.params or {}), **trains, "pairs": len(found), "pairs_found": total}
    TrainingJob.all_tenants.filter(pk=job.pk).update(params=job.params)
    reporter.progress(0.02, f"{len(found)} pairs of items taken one after another", force=True)
    result = registry.train_job_handler(job, reporter)
    return {**result, "pairs": len(found), "pairs_found": total}
