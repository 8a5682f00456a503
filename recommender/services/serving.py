"""Serving: top-k items for a user (their history read now), for an anonymous session (its items), and the
items similar to an item, from the organisation's active recommender version.

The model is loaded once per process (the platform's model cache, ``core.registry.services.serving``), and so
is the catalogue (``services.snapshot``: arrays rebuilt in the background after any catalogue write; while a
rebuild runs, what is picked from the old arrays is checked against the item table, ``_pick_live``, so a
deleted, unavailable or expired item is never served, and the answer shows the items as they are now); the
user's history is read at request time (one query), so a new event changes the next answer without
retraining; the organisation's settings, active version and running experiment (``serving_state``) are cached
per process behind ``core.generations``' tokens, read again by the first request after any of them changes
(a warm request makes no other statement). Items are served only while they exist, are not deleted, not
expired and (by default) available, and within the request's filters (category, price range: masks over the
snapshot); the request's exclusions, the history's own items and (by default) the user's purchases are left
out. Each item comes with ``why``: the history items that drove it (empty when it is there for its
popularity), ``why_words``: the words its title shares with theirs, and ``reason`` (``recommender.explain``):
the component that contributed most, ``{"kind", "detail", "items"}``, never empty.

Text (``services.text``): the history's text neighbours from the catalogue's vector index are merged in, so
items nobody has bought are served through their text: the hybrid ranker scores those it was not trained on
by their text; every model ranks by text alone when it knows none of the history's items (a new user who
only looked at new items, or the similar items of an item nobody has bought).

Experiments (``services.experiments``): while one runs, a user's (or a session id's) answer comes from the
version of the arm its stable hash picks, carries ``experiment`` (id, name, arm) and leaves an impression;
otherwise ``experiment`` is null. Diversity (``services.diversity``): at most ``max_per_category`` items of
any one category, the request's limit or the organisation's default.

Metering: ``recommendations_served`` counts one per answered request, whatever ``k`` (a request refused or
failed counts nothing; an empty answer still counts), through ``core.billing.streamed``: with Redis the quota
is read from its counter and the ledger line goes through the ledger stream, so a request makes no metering
statement of its own (five before).
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np

from core.billing.streamed import metered_streamed
from core.errors import InvalidInput, NotFound
from core.generations import GenerationCache
from core.registry.services.common import active_version
from core.registry.services.serving import loaded_model
from recommender import explain, hybrid, ranking
from recommender.kinds import RECOMMENDER
from recommender.selectors import (
    ServingSettings,
    item_get,
    items_servable,
    items_titles,
    popular_items,
    serving_settings,
    user_history,
)
from recommender.services import diversity, experiments, generation, snapshot, text
from recommender.services.training import APP, TASK

SERVED_METER = "recommendations_served"
MAX_K = 100
MAX_SESSION_ITEMS = 100
MAX_EXCLUDE = 1_000
MAX_TEXT_CANDIDATES = 1_000  # text neighbours asked of the vector index per request
# a large catalogue's hybrid adds this many items within a request's filters to its candidates (the best by
# its user-independent part, as ``hybrid.BASE_CANDIDATES`` over the whole catalogue) where they are needed
FILTER_CANDIDATES = 500


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    min_price: Decimal | None = None
    max_price: Decimal | None = None
    available_only: bool = True
    exclude: frozenset[str] = field(default_factory=frozenset)
    max_per_category: int | None = None  # None: the organisation's default (``services.diversity``); 0: none


def check_k(k: int) -> int:
    if not 1 <= k <= MAX_K:
        raise InvalidInput(f"k must be from 1 to {MAX_K}; got {k}.", details={"field": "k"})
    return k


def _live_popularity(organisation) -> ranking.RankModel:
    """What serves before any model is trained: the items with the most weighted events lately."""
    counts = popular_items(organisation=organisation)
    top = max(counts.values(), default=1.0)
    items = list(counts)
    popularity = np.array([counts[i] / top for i in items], dtype=np.float32)
    return ranking.RankModel(
        config=ranking.RankConfig(method="popularity"), items=items, popularity=popularity, similarity=None
    )


def _order(scores: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Positions ``start:stop`` of the best-first order of ``scores`` (a partition, not a full sort, while
    ``stop`` is below the length: a catalogue of a million is not sorted for ten items)."""
    n = len(scores)
    if stop >= n:
        return np.argsort(-scores, kind="stable")[start:]
    top = np.argpartition(-scores, stop - 1)[:stop]
    return top[np.argsort(-scores[top], kind="stable")][start:]


def _pick(
    *, snap: snapshot.Snapshot, ranked: "Ranked", k: int, filters: Filters, skip: set[str], limit: int | None
) -> list[tuple[int, float]]:
    """The k best-scored items that may be served (the snapshot's masks: live, not expired, available,
    within the filters) and within the limit per category, in order, as (snapshot row, score); candidates
    are read in growing chunks."""
    ids, scores = ranked.ids, ranked.scores
    rows = ranked.rows(snap)
    if filters.category:
        scores = np.where(
            snap.category_mask(filters.category)[np.maximum(rows, 0)] & (rows >= 0), scores, -np.inf
        )
    now = time.time()
    picked: list[tuple[int, float]] = []
    counts: dict[str, int] = {}
    start, chunk = 0, max(50, 4 * k)
    while len(picked) < k and start < len(scores):
        block = _order(scores, start, start + chunk)
        ok = snap.servable(
            rows[block],
            now=now,
            category=None,
            min_price=filters.min_price,
            max_price=filters.max_price,
            available_only=filters.available_only,
        )
        for position, good in zip(block.tolist(), ok.tolist(), strict=True):
            score = float(scores[position])
            if not good or score == -np.inf or ids[position] in skip or ids[position] in filters.exclude:
                continue
            row = int(rows[position])
            if diversity.within_limit(snap.categories[row], counts, limit):
                picked.append((row, score))
                if len(picked) == k:
                    break
        start, chunk = start + chunk, chunk * 4
    return picked


def _pick_live(
    *, organisation, snap, ranked: "Ranked", k: int, filters: Filters, skip: set[str], limit: int | None
) -> tuple[list[tuple[int, float]], dict[str, Any]]:
    """``_pick`` from a stale snapshot (a newer catalogue version is being built): the picked items are read
    from the item table (one query a round) and those deleted, unavailable, expired or outside the filters
    since the snapshot are left out for the next best (twice as many asked each round); returns the picks and
    their rows as they are now."""
    gone: set[str] = set()
    want = k
    while True:
        picked = _pick(snap=snap, ranked=ranked, k=want, filters=filters, skip=skip | gone, limit=limit)
        ids = [snap.ids[row] for row, _ in picked]
        live = items_servable(
            organisation=organisation,
            external_ids=ids,
            category=filters.category,
            min_price=filters.min_price,
            max_price=filters.max_price,
            available_only=filters.available_only,
        )
        dropped = [i for i in ids if i not in live]
        if not dropped:
            return picked[:k], live
        gone.update(dropped)
        want *= 2


@dataclass
class Ranked:
    """Candidates and their scores, and how each came: by the model, or by text alone (``by_text``)."""

    ids: list[str]
    scores: np.ndarray
    by_text: set[str]
    neighbours: text.TextNeighbours
    model: Any = None  # the model whose ``items`` start ``ids`` (their rows are cached in the snapshot)
    positions: np.ndarray | None = None  # with ``model``: ``ids`` start with these of its items instead
    # the text neighbours were not searched (``_rank``): the most one of them could score; None: searched
    ceiling: float | None = None

    def final(self, picked: list[tuple[int, float]], k: int) -> bool:
        """Whether ``picked`` is the answer the text neighbours would give too: they were searched, or the
        k-th pick scores above what any of them could."""
        return self.ceiling is None or (len(picked) == k and picked[-1][1] > self.ceiling)

    def rows(self, snap: snapshot.Snapshot) -> np.ndarray:
        if self.model is None:
            return snap.rows_of(self.ids)
        known = snap.model_rows(self.model)
        if self.positions is not None:
            known = known[self.positions]
        return (
            np.concatenate([known, snap.rows_of(self.ids[len(known) :])])
            if len(self.ids) > len(known)
            else known
        )


def _rank(
    *,
    organisation,
    snap,
    model,
    history: dict[str, float],
    skip: set[str],
    k: int,
    text_models: dict[str, str] | None = None,
    search_text: bool = False,
    more: np.ndarray | None = None,
    searched: text.TextNeighbours | None = None,
) -> Ranked:
    """The model's scores, with the catalogue's text neighbours of the history merged in:

    - any model ranks by text alone when it knows none of the history's items (a user who only saw new
      items, or the similar items of an item nobody has bought yet);
    - otherwise the hybrid scores the neighbours it was not trained on (items added since) by their text,
      and the other models rank as they are (text adds nothing to them). A hybrid of more than
      ``hybrid.FULL_SCORING_MAX`` items scores its candidates only (``HybridModel.candidate_scores``), with
      ``more`` of its items among them when given (``_category_pool``, ``_filtered_pool``). ``searched``: the
      neighbours an earlier ranking of the same request found (not searched again).

    A hybrid whose text and two-tower weights and cold slots are all 0 (as training may choose) is ranked
    without searching the neighbours unless ``search_text``: they could only add items scored at most
    ``HybridModel.text_neighbours_ceiling``, so a pick whose k-th item scores above it is final
    (``_ranked_and_picked`` searches and ranks again otherwise)."""
    knows = any(i in model.index for i in history)
    if knows and not isinstance(model, hybrid.HybridModel):
        return Ranked(model.items, model.scores(history), set(), text.TextNeighbours([], {}), model)
    ceiling = None
    if searched is not None:
        neighbours = searched
    elif knows and not search_text and not model.text_neighbours_matter():
        neighbours = text.TextNeighbours([], {})  # not searched: ``Ranked.ceiling`` says when they count
        ceiling = model.text_neighbours_ceiling()
    else:
        want = min(MAX_TEXT_CANDIDATES, 4 * k + len(skip) + len(history))
        whole = (
            knows and isinstance(model, hybrid.HybridModel) and len(model.items) <= hybrid.FULL_SCORING_MAX
        )
        neighbours = text.text_neighbours(
            organisation=organisation,
            snap=snap,
            history=history,
            k=want,
            models=text_models,
            unknown_to=model if whole else None,  # it scores all its items: only the others can come by text
        )
    if neighbours.hits and not knows:
        ids = [i for i, _ in neighbours.hits]
        return Ranked(ids, np.array([c for _, c in neighbours.hits]), set(ids), neighbours)
    if isinstance(model, hybrid.HybridModel):
        extra = [(i, c) for i, c in neighbours.hits if i not in model.index]
        cosines = np.array([c for _, c in extra], dtype=np.float32)
        if len(model.items) > hybrid.FULL_SCORING_MAX:
            found = [model.index[i] for i, _ in neighbours.hits if i in model.index]
            candidates, scores, extra_scores = model.candidate_scores(
                history, found, cosines, [0.0] * len(extra), more=more
            )
            ids = [model.items[i] for i in candidates.tolist()] + [i for i, _ in extra]
            return Ranked(
                ids,
                np.concatenate([scores, extra_scores]),
                {i for i, _ in extra},
                neighbours,
                model,
                candidates,
                ceiling=ceiling,
            )
        scores, extra_scores = model.scores_with(history, cosines, [0.0] * len(extra), explain=True)
        ids = model.items + [i for i, _ in extra]
        scores = np.concatenate([scores, extra_scores])
        return Ranked(ids, scores, {i for i, _ in extra}, neighbours, model, ceiling=ceiling)
    return Ranked(model.items, model.scores(history), set(), neighbours, model)


def _ranked_and_picked(
    *,
    organisation,
    snap,
    model,
    history: dict[str, float],
    skip: set[str],
    k: int,
    filters: Filters,
    limit: int | None,
    catalogue_version: int,
    text_models: dict[str, str] | None = None,
) -> tuple[Ranked, list[tuple[int, float]], dict[str, Any] | None]:
    """``_rank`` and ``_pick`` (``_pick_live`` while a newer catalogue version than the snapshot's is being
    built: the picks checked against the item table, and their rows as they are now); ranked again with the
    text neighbours searched when the first ranking left them out and its picks are not final. A ranking of
    candidates only has an asked category's best items among them from the start (``_category_pool``), and is
    ranked once more with the best items within the other filters when it picked fewer than ``k``
    (``_filtered_pool``): the candidates alone could leave a filter of 2,000 items out of 100,000 short."""

    def ranked_and_picked(search_text: bool, more: np.ndarray | None, searched=None):
        ranked = _rank(
            organisation=organisation,
            snap=snap,
            model=model,
            history=history,
            skip=skip,
            k=k,
            text_models=text_models,
            search_text=search_text,
            more=more,
            searched=searched,
        )
        if snap.version < catalogue_version:
            picked, live = _pick_live(
                organisation=organisation,
                snap=snap,
                ranked=ranked,
                k=k,
                filters=filters,
                skip=skip,
                limit=limit,
            )
            return ranked, picked, live
        return ranked, _pick(snap=snap, ranked=ranked, k=k, filters=filters, skip=skip, limit=limit), None

    more = _category_pool(snap=snap, model=model, filters=filters)
    filled = more is not None
    for search_text in (False, True):
        ranked, picked, live = ranked_and_picked(search_text, more)
        if len(picked) < k and not filled:
            filled = True
            more = _filtered_pool(snap=snap, ranked=ranked, filters=filters)
            if more is not None:
                searched = None if ranked.ceiling is not None else ranked.neighbours
                ranked, picked, live = ranked_and_picked(search_text, more, searched)
        if ranked.final(picked, k):
            break
    return ranked, picked, live


def _best_within(
    snap, model, rows: np.ndarray, positions: np.ndarray, filters: Filters, leave: np.ndarray | None = None
):
    """Of ``model``'s items at ``positions`` (snapshot ``rows``), the ``FILTER_CANDIDATES`` it may serve now
    within ``filters`` (not in ``leave``) with the best user-independent part (``HybridModel.base``), as
    positions in its items; None when there are none."""
    ok = snap.servable(
        rows,
        now=time.time(),
        category=filters.category,
        min_price=filters.min_price,
        max_price=filters.max_price,
        available_only=filters.available_only,
    )
    pool = positions[ok]
    if leave is not None:
        pool = pool[~np.isin(pool, leave, assume_unique=True)]
    if len(pool) > FILTER_CANDIDATES:
        pool = pool[np.argpartition(-model.base(pool), FILTER_CANDIDATES - 1)[:FILTER_CANDIDATES]]
    return pool if len(pool) else None


def _category_pool(*, snap, model, filters: Filters) -> np.ndarray | None:
    """For a hybrid that scores candidates only: the asked category's ``FILTER_CANDIDATES`` best items by
    their user-independent part (``HybridModel.base``) that may be served within the filters, scored with the
    candidates from the start, so a category the candidates barely reach is ranked in one pass with
    candidates of its own, as the whole catalogue is. The category's items in that order are kept per model
    on the snapshot (``Snapshot.kept``); a request checks them in chunks until it has enough."""
    if not filters.category or not isinstance(model, hybrid.HybridModel):
        return None
    if len(model.items) <= hybrid.FULL_SCORING_MAX:
        return None
    rows = snap.category_rows.get(filters.category)
    if rows is None:
        return None

    def by_base() -> tuple[np.ndarray, np.ndarray]:
        positions = snap.model_positions(model)[rows]
        known = positions >= 0
        order = np.argsort(-model.base(positions[known]), kind="stable")
        return rows[known][order], positions[known][order]

    ordered_rows, ordered = snap.kept(("category by base", filters.category), model, by_base)
    found: list[np.ndarray] = []
    count, start, chunk, now = 0, 0, 2 * FILTER_CANDIDATES, time.time()
    while count < FILTER_CANDIDATES and start < len(ordered):
        ok = snap.servable(
            ordered_rows[start : start + chunk],
            now=now,
            category=None,  # every row is of the category
            min_price=filters.min_price,
            max_price=filters.max_price,
            available_only=filters.available_only,
        )
        found.append(ordered[start : start + chunk][ok])
        count += int(ok.sum())
        start, chunk = start + chunk, 4 * chunk
    pool = np.concatenate(found)[:FILTER_CANDIDATES] if found else np.zeros(0, np.int64)
    return pool if len(pool) else None


def _filtered_pool(*, snap, ranked: Ranked, filters: Filters) -> np.ndarray | None:
    """For a ranking of candidates only (``Ranked.positions``) that picked fewer than asked: the best items
    within ``filters`` that were not among the candidates (``_best_within``), to rank again with them."""
    if ranked.positions is None or ranked.model is None:
        return None
    rows = snap.model_rows(ranked.model)
    positions = np.flatnonzero(rows >= 0)
    return _best_within(snap, ranked.model, rows[positions], positions, filters, leave=ranked.positions)


def _why(*, model, ranked: Ranked, snap, picked, history) -> dict[str, tuple[list[str], explain.Reason]]:
    """Per picked item, the history items that drove it (by the model, or by text for text-only ones) and the
    reason it is there (``recommender.explain``: the component that contributed most)."""
    out = {}
    if isinstance(model, hybrid.HybridModel):  # the picks' shares of the history in one pass
        model.shares_prefetch(history, [k for row, _ in picked if (k := snap.ids[row]) not in ranked.by_text])
    for row, _ in picked:
        key = snap.ids[row]
        by_text = key in ranked.by_text
        if by_text:
            why = text.text_why(
                vector=ranked.neighbours.vector_of(key),
                history_vectors=ranked.neighbours.history_vectors,
                history=history,
            )
        else:
            why = model.why(history, key)
        out[key] = (why, explain.reason_of(model=model, history=history, item=key, why=why, by_text=by_text))
    return out


def _answer(*, organisation, snap, version, model, picked, why, live=None) -> dict[str, Any]:
    """The answer; ``live``: the picked items' rows as they are now (a stale snapshot's picks)."""
    explaining = sorted({i for reasons, _ in why.values() for i in reasons})
    titles = {i: snap.titles[snap.row[i]] for i in explaining if i in snap.row}
    missing = [i for i in explaining if i not in titles]  # deleted items still explain
    titles.update(items_titles(organisation=organisation, external_ids=missing))

    def names(items: tuple[str, ...]) -> str:
        return ", ".join(titles.get(i) or i for i in items)

    items = []
    for row, score in picked:
        key, title, categories, price = (
            snap.ids[row],
            snap.titles[row],
            snap.categories[row],
            snap.prices[row],
        )
        if live is not None:
            now = live[key]
            title, categories = now.title, list(now.categories or [])
            price = None if now.price is None else str(now.price)
        items.append(
            {
                "id": key,
                "title": title,
                "score": round(score, 6),
                "categories": categories,
                "price": price,
                "why": why[key][0],
                "why_words": text.shared_words(title=title, others=[titles.get(i, "") for i in why[key][0]]),
                "reason": explain.as_dict(why[key][1], model=model, names=names, live=version is None),
            }
        )
    return {
        "experiment": None,
        "model_version": None if version is None else version.pk,
        "version": None if version is None else version.version,
        "method": "live_popularity" if version is None else version.method,
        "items": items,
    }


@dataclass(frozen=True)
class ServingState:
    """What a request reads besides the user's history: the settings (with the catalogue version), the
    active version (None: live popularity) and the running experiment (None), with its versions."""

    settings: ServingSettings
    active: Any
    running: Any
    # the text model's reference once a request asked for it (``text.text_neighbours``): it changes only with
    # a model version, which loads a new state (the "registry" token), so no request reads it again
    text_models: dict[str, str] = field(default_factory=dict, compare=False)


_states: GenerationCache[ServingState] = GenerationCache(generation.SCOPE, "registry")


def serving_state(*, organisation) -> ServingState:
    """The organisation's ``ServingState``, cached per process until one of them changes (with Redis:
    ``core.generations``; the three statements otherwise)."""

    def load() -> ServingState:
        version = active_version(organisation, APP, TASK)
        if version is not None and version.kind != RECOMMENDER:
            # core's /api/models/train can put another kind under recommender/ranking; it cannot rank
            version = None
        return ServingState(
            settings=serving_settings(organisation=organisation),
            active=version,
            running=experiments.experiment_running(organisation=organisation),
        )

    return _states.get(organisation, load)


def _serving_version(*, state: ServingState, subject: str | None):
    """The version that answers, and the running experiment and arm when the subject (a user or a session
    id) falls in one: the arm's version; else the active version."""
    running = state.running if subject else None
    if running is not None:
        arm = experiments.arm_for(experiment_id=running.pk, subject=subject or "", share_b=running.share_b)
        return (running.version_a if arm == "A" else running.version_b), running, arm
    return state.active, None, ""


def _serve(
    *,
    organisation,
    api_key,
    subject_history: Callable[[ServingState], tuple[dict[str, float], set[str]]],
    k: int,
    filters: Filters,
    subject: str | None = None,
    record: bool = True,
) -> tuple[dict[str, Any], int]:
    """Score with the experiment arm's or the active version (loaded once per process), or with live
    popularity before the first model; merge the text neighbours in, pick, explain and meter; under an
    experiment, record the impression. ``subject_history(state)``: the history to serve and the items to
    skip. With the answer, the history's length.

    The meter is charged up front, with the serving state's generation tokens read in the same Redis call
    (``metered_streamed(upfront=True, prefetch=...)``): with the history's read, two round trips a request."""

    def run() -> tuple[dict[str, Any], Any, str, int]:
        state = serving_state(organisation=organisation)
        history, skip = subject_history(state)
        settings = state.settings
        version, experiment, arm = _serving_version(state=state, subject=subject)
        limit = (
            settings.max_per_category
            if filters.max_per_category is None
            else (filters.max_per_category or None)
        )
        snap = snapshot.catalogue_snapshot(organisation=organisation, version=settings.catalogue_version)
        model = _live_popularity(organisation) if version is None else loaded_model(version=version)
        ranked, picked, live = _ranked_and_picked(
            organisation=organisation,
            snap=snap,
            model=model,
            history=history,
            skip=skip,
            k=k,
            filters=filters,
            limit=limit,
            catalogue_version=settings.catalogue_version,
            text_models=state.text_models,
        )
        why = _why(model=model, ranked=ranked, snap=snap, picked=picked, history=history)
        answer = _answer(
            organisation=organisation,
            snap=snap,
            version=version,
            model=model,
            picked=picked,
            why=why,
            live=live,
        )
        return answer, experiment, arm, len(history)

    answer, experiment, arm, length = metered_streamed(
        run,
        organisation=organisation,
        meter=SERVED_METER,
        api_key=api_key,
        upfront=True,
        prefetch=(_states,),
    )
    if experiment is None:
        return answer, length
    if record:
        experiments.impression_record(
            organisation=organisation,
            experiment=experiment,
            arm=arm,
            subject=subject or "",
            items=[item["id"] for item in answer["items"]],
        )
    return {**answer, "experiment": {"id": experiment.pk, "name": experiment.name, "arm": arm}}, length


def recommendations_for_user(
    *,
    organisation,
    user: str,
    k: int,
    filters: Filters,
    exclude_purchased: bool = True,
    api_key=None,
    record: bool = True,
) -> dict[str, Any]:
    """Top ``k`` for ``user`` from their history as it is now (a user with none gets the popular items).
    ``record=False`` (the explorer: staff looking, not the user) leaves no experiment impression."""
    check_k(k)

    def subject_history(state: ServingState) -> tuple[dict[str, float], set[str]]:
        weights = state.settings.weights
        history, purchased = user_history(organisation=organisation, user=user, weights=weights)
        return history, set(purchased) if exclude_purchased else set()

    answer, length = _serve(
        organisation=organisation,
        api_key=api_key,
        subject_history=subject_history,
        k=k,
        filters=filters,
        subject=user,
        record=record,
    )
    return {"user": user, "history_items": length, **answer}


def recommendations_for_session(
    *, organisation, items: list[str], k: int, filters: Filters, session: str | None = None, api_key=None
) -> dict[str, Any]:
    """Top ``k`` for an anonymous session from the items it saw (those items are not served back); with a
    ``session`` id it takes part in the running experiment (its feedback events use that id as their user)."""
    check_k(k)
    if len(items) > MAX_SESSION_ITEMS:
        raise InvalidInput(f"At most {MAX_SESSION_ITEMS} session items.", details={"field": "items"})
    history = {item: 1.0 for item in items}
    answer, length = _serve(
        organisation=organisation,
        api_key=api_key,
        subject_history=lambda _state: (history, set(items)),
        k=k,
        filters=filters,
        subject=session or None,
    )
    return {"user": None, "session": session or None, "history_items": length, **answer}


def items_similar(
    *, organisation, external_id: str, k: int, filters: Filters, api_key=None
) -> dict[str, Any]:
    """The ``k`` items most like one catalogue item (by the active model; by text for an item it does not
    know)."""
    check_k(k)
    if item_get(organisation=organisation, external_id=external_id) is None:
        raise NotFound("No such item.")
    answer, _length = _serve(
        organisation=organisation,
        api_key=api_key,
        subject_history=lambda _state: ({external_id: 1.0}, {external_id}),
        k=k,
        filters=filters,
    )
    return {"item": external_id, **answer}
