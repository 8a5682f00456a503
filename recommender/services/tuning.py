"""The catalogue's text model tuned on behaviour: a LoRA adapter on the shared encoder, trained on the items
customers take one after another (``recommender``/``item_text``, the platform's embedding kind).

``item_text_tune_start`` reads the organisation's events, keeps those before the hybrid ranker's validation
window (so the ranker, trained next on the tuned vectors, weighs the text part on behaviour the adapter never
saw), turns them into text pairs (``recommender.pairs``), stores them as a ``pairs`` dataset and queues the
platform's ``ml.train`` job on it. That job trains the adapter with in-batch negatives, scores it on held-out
pairs (MRR) and activates it by the registry's promotion rule; once active, every item is embedded again by
it (``text.item_text_activated``, the task's ``on_activate``), and the next training of the ranker and the
two-tower model reads those vectors. Items nobody has bought are embedded by the same adapter: what it
learned from the sold items' texts reaches them through their words.
"""

from core.errors import InvalidInput
from core.registry import services as registry
from recommender import hybrid, pairs
from recommender.models import Item
from recommender.selectors import interactions
from recommender.services import text

MIN_PAIRS = 200
DATASET_NAME = "item-pairs"


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
    """Queue the tuning job; refused (400) with too little behaviour. Returns ``(job, pairs used)``."""
    found, total = item_text_pairs(organisation=organisation, max_pairs=max_pairs)
    if len(found) < MIN_PAIRS:
        raise InvalidInput(
            f"Tuning the item text needs at least {MIN_PAIRS} pairs of different items taken one after the"
            f" other by the same user, before the last weeks the ranker validates on; your events give"
            f" {total}. Send more behaviour first."
        )
    dataset = registry.dataset_from_rows(
        organisation=organisation,
        name=DATASET_NAME,
        task="pairs",
        rows=found,
        source="behaviour: items taken one after another",
        split=pairs.SPLIT,
    )
    job = registry.model_train_start(
        organisation=organisation,
        dataset_id=dataset.pk,
        app=text.APP,
        task=text.TEXT_TASK,
        config=dict(pairs.TUNE_CONFIG),
        created_by=created_by,
    )
    return job, len(found)
