"""Item text vectors: the catalogue in the platform's vector index (``core.vectors``), and what serving asks
of it.

An item's text (title, description, categories) is embedded by the model ``core.vectors`` names for
``recommender``/``item_text`` (the organisation's active embedding version for that task, else the shared
base encoder). A catalogue upsert that creates items or changes an item's text clears that item's vector and
queues ``recommender.embed_items`` on the ``infer`` queue after commit (at most one waiting per
organisation); the task embeds every item without a vector of the current model, in batches whose rows are
locked (``SKIP LOCKED``: two workers never take the same items), so only new or changed items are embedded.
Training the hybrid ranker embeds whatever is still pending before it reads the vectors, and beat's
``recommender.embed_pending`` queues a run every five minutes for each organisation with items left
without a vector.

Serving reads the vectors of a history's items from the catalogue's in-memory snapshot
(``services.snapshot``), sums them with the history's weights into a profile and asks the snapshot's index
for the closest items: that is how items nobody has bought are reached (``text_neighbours``).
"""

import re
from dataclasses import dataclass
from typing import cast

import numpy as np
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core import vectors
from core.celery import app as celery_app
from core.jobs.queues import Queue
from recommender.models import Item
from recommender.services import snapshot

APP, TEXT_TASK = "recommender", "item_text"
EMBED_TASK_NAME = "recommender.embed_items"
EMBED_BATCH = 256
QUEUED_FOR_S = 120  # while a run is queued for an organisation, more upserts queue no second one
STOP_WORDS = frozenset({"and", "the", "for", "with", "set", "of", "in", "to", "a", "an", "on", "by"})


def item_text(*, title: str, description: str, categories: list[str]) -> str:
    parts = [title.strip(), description.strip(), ", ".join(categories)]
    return ". ".join(p for p in parts if p)


def _item_rows(organisation):
    return Item.objects.for_org(organisation).filter(deleted=False, vector__isnull=False)


def _rebuild(organisation, model: str) -> int:
    return items_embed_pending(organisation=organisation)


# The catalogue as a vector source: vectors and their model live on the Item rows.
ITEM_VECTORS = vectors.VectorSource(
    name="recommender.items",
    app=APP,
    task=TEXT_TASK,
    rows=_item_rows,
    rebuild=_rebuild,
    key_field="external_id",
)


def _queued_key(organisation_id: int) -> str:
    return f"reco:embed-queued:{organisation_id}"


def items_embed_enqueue(*, organisation_id: int) -> None:
    """Queue an embedding run for the organisation after commit, unless one is already waiting."""

    def send() -> None:
        if cache.add(_queued_key(organisation_id), 1, timeout=QUEUED_FOR_S):
            celery_app.send_task(EMBED_TASK_NAME, args=[organisation_id], queue=Queue.INFER)

    transaction.on_commit(send)


def item_text_activated(*, organisation, version) -> None:
    """``recommender``/``item_text``'s ``on_activate``: a new text model (a tuned one, or a rollback) is
    active, so every item is embedded again by it, in the background (searches meanwhile re-embed before they
    rank, ``text_neighbours``, so no ranking mixes two models)."""
    items_embed_enqueue(organisation_id=organisation.pk)


def items_embed_started(*, organisation_id: int) -> None:
    """A run has started: items upserted from now on queue the next one."""
    cache.delete(_queued_key(organisation_id))


def items_pending(*, organisation, model: str | None = None):
    """The organisation's live items without a vector of ``model`` (default: the current one)."""
    if model is None:
        model = vectors.current_model(organisation=organisation, app=APP, task=TEXT_TASK)
    return Item.objects.for_org(organisation).filter(deleted=False).exclude(embedder=model)


def items_embed_pending(*, organisation, batch_size: int = EMBED_BATCH) -> int:
    """Embed every live item without a vector of the current model; returns how many were embedded."""
    model = vectors.current_model(organisation=organisation, app=APP, task=TEXT_TASK)
    done = 0
    while True:
        with transaction.atomic():
            batch = list(
                items_pending(organisation=organisation, model=model)
                .select_for_update(skip_locked=True)
                .order_by("pk")[:batch_size]
            )
            if not batch:
                return done
            texts = [
                item_text(title=i.title, description=i.description, categories=i.categories) for i in batch
            ]
            embedded = vectors.texts_embed(organisation=organisation, app=APP, task=TEXT_TASK, texts=texts)
            vectors.vectors_fill(source=ITEM_VECTORS, objects=batch, embedded=embedded)
            now = timezone.now()
            for item in batch:
                item.updated_at = now  # bulk_update skips auto_now; the vector index keys on it
            Item.all_tenants.bulk_update(batch, ["vector", "embedder", "updated_at"])
            snapshot.catalogue_changed(organisation=organisation)
            done += len(batch)


def organisations_with_items_to_embed() -> list[int]:
    """Every organisation with live items that have no vector (beat's sweep: a run that never came, a worker
    that died; the one cross-tenant read here)."""
    return list(
        Item.all_tenants.filter(vector__isnull=True, deleted=False, organisation__deleted_at__isnull=True)
        .values_list("organisation_id", flat=True)
        .distinct()
        .order_by("organisation_id")
    )


@dataclass(frozen=True)
class TextNeighbours:
    """What the index says about a history: the closest items (cosine), the history's own vectors, and the
    snapshot and model they come from (the vectors of the hits)."""

    hits: list[tuple[str, float]]
    history_vectors: dict[str, np.ndarray]
    snap: snapshot.Snapshot | None = None
    model: str = ""

    def vector_of(self, key: str) -> np.ndarray | None:
        return None if self.snap is None else self.snap.vector_of(key, self.model)


def _embedded_history(snap: snapshot.Snapshot, history: dict[str, float]) -> bool:
    rows = [snap.row[i] for i in history if i in snap.row]
    return bool(rows) and bool((snap.embedder[rows] >= 0).any())


def text_neighbours(
    *,
    organisation,
    snap: snapshot.Snapshot,
    history: dict[str, float],
    k: int,
    models: dict[str, str] | None = None,
    unknown_to=None,
) -> TextNeighbours:
    """The ``k`` items whose text is closest to the history's (weighted sum of its items' vectors), from the
    snapshot's index (exact below ``VECTOR_ANN_MIN_VECTORS`` items, faiss IVF above). When some items carry
    vectors of another model than the current one (a new embedding version was activated), they are embedded
    again first, as ``core.vectors.vector_search`` does, so one ranking never mixes two models. ``models``:
    where the caller keeps the current model's reference (``serving.ServingState.text_models``), read once.
    ``unknown_to``: a model that scores every item it knows, so only the neighbours it does not know count:
    none are searched for when every embedded item is one of its items (``Snapshot.text_all_known``)."""
    if not history or not _embedded_history(snap, history):
        return TextNeighbours([], {})  # nothing of the history is embedded: the encoder is not even loaded
    model = models.get(TEXT_TASK) if models is not None else None
    if model is None:
        model = vectors.current_model(organisation=organisation, app=APP, task=TEXT_TASK)
        if models is not None:
            models[TEXT_TASK] = model
    if snap.stale(model):
        items_embed_pending(organisation=organisation)
        snap = snapshot.catalogue_snapshot(  # now: the vectors just made are what this request ranks by
            organisation=organisation, version=snapshot.catalogue_version(organisation), wait=True
        )
    elif unknown_to is not None and snap.text_all_known(unknown_to, model):
        return TextNeighbours([], {})  # each neighbour would be one of its items: nothing to add
    keys, matrix = snap.vectors_of(history, model)
    if not keys:
        return TextNeighbours([], {})
    own = dict(zip(keys, matrix, strict=True))
    profile = np.array([history[key] for key in keys], dtype=np.float32) @ matrix  # the weighted sum
    norm = float(np.linalg.norm(profile))
    if norm == 0:
        return TextNeighbours([], own)
    _rows, index = snap.index(model)
    if not len(index):
        return TextNeighbours([], own)
    found = index.search_pairs(np.asarray(profile / norm, dtype=np.float32)[None, :], k)[0]
    return TextNeighbours(cast(list[tuple[str, float]], found), own, snap, model)  # the snapshot's keys: str


def text_why(
    *,
    vector: np.ndarray | None,
    history_vectors: dict[str, np.ndarray],
    history: dict[str, float],
    limit: int = 3,
) -> list[str]:
    """The history items whose text is closest to an item's (positive similarity only)."""
    if vector is None or not history_vectors:
        return []
    shares = sorted(
        ((history.get(key, 1.0) * float(v @ vector), key) for key, v in history_vectors.items()), reverse=True
    )
    return [key for share, key in shares[:limit] if share > 0]


_WORD = re.compile(r"[a-z][a-z0-9'-]{2,}")


def words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS}


def shared_words(*, title: str, others: list[str], limit: int = 5) -> list[str]:
    """The words of ``title`` that the explaining items' titles use too, in the title's order."""
    theirs = set().union(*(words(o) for o in others)) if others else set()
    out: list[str] = []
    for word in _WORD.findall(title.lower()):
        if word in theirs and word not in out and word not in STOP_WORDS:
            out.append(word)
    return out[:limit]
