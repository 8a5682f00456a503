"""Serving's in-memory catalogue (``services.snapshot``): kept between requests while the catalogue does not
change, rebuilt after any write that changes it (an upsert, a deletion, the embedding job), filters as masks
over it; rebuilt off the request path once there is one (a stale snapshot serves meanwhile, never an item
deleted or unavailable since); and the hybrid's candidate scoring for large catalogues, which must rank as
full scoring does."""

import threading
import time
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pytest
from django.utils import timezone

from core.registry.services.common import active_version
from core.registry.services.serving import loaded_model
from recommender import hybrid
from recommender.selectors import serving_settings
from recommender.services import catalogue, serving, snapshot, text
from tests.recommender.conftest import train_now

pytestmark = pytest.mark.django_db


def _ids(answer) -> list[str]:
    return [item["id"] for item in answer["items"]]


def _snap(org) -> snapshot.Snapshot:
    return snapshot.catalogue_snapshot(
        organisation=org, version=serving_settings(organisation=org).catalogue_version
    )


def _for(org, user: str = "u0", **filters):
    return serving.recommendations_for_user(
        organisation=org, user=user, k=10, filters=serving.Filters(**filters)
    )


def test_the_snapshot_is_kept_until_the_catalogue_changes(shop):
    org, _ = shop
    train_now(org)
    assert "C" in _ids(_for(org))
    first = _snap(org)
    _for(org)
    assert _snap(org) is first  # nothing changed: the same arrays serve
    catalogue.items_upsert(organisation=org, rows=[{"id": "C", "title": "White plate", "available": False}])
    assert _snap(org) is not first
    assert "C" not in _ids(_for(org))  # the next request sees the change
    assert "C" in _ids(_for(org, available_only=False))
    changed = _snap(org)
    catalogue.items_upsert(organisation=org, rows=[{"id": "D", "title": "Green plate", "deleted": True}])
    assert "D" not in _ids(_for(org)) and _snap(org) is not changed
    embedded = _snap(org)
    assert text.items_embed_pending(organisation=org) == 5
    assert _snap(org) is not embedded and _snap(org).has_vectors()


def test_masks_apply_price_category_expiry_and_exclusions(shop):
    org, _ = shop
    train_now(org)
    soon = (timezone.now() + timedelta(seconds=1)).isoformat()
    catalogue.items_upsert(
        organisation=org, rows=[{"id": "E", "title": "Gift bag", "categories": ["wrap"], "expires_at": soon}]
    )
    assert set(_ids(_for(org, "u10", category="mugs"))) <= {"A", "B", "F"}
    assert set(_ids(_for(org, "u10", max_price="10"))) <= {"A", "B", "E"}
    assert "A" not in _ids(_for(org, "u10", exclude=frozenset({"A"})))
    snap = _snap(org)
    rows = snap.rows_of(["A", "E", "nope"])
    ok = snap.servable(
        rows,
        now=timezone.now().timestamp() + 5,
        category=None,
        min_price=None,
        max_price=None,
        available_only=True,
    )
    assert ok.tolist() == [True, False, False]  # E expired by then; an unknown id is never servable


def test_hybrid_candidate_scoring_ranks_as_full_scoring(shop, monkeypatch):
    org, _ = shop
    catalogue.items_upsert(
        organisation=org,
        rows=[{"id": f"N{i}", "title": f"Blue mug number {i}", "categories": ["mugs"]} for i in range(6)],
    )
    text.items_embed_pending(organisation=org)
    train_now(org, "hybrid")
    full = {user: _for(org, user) for user in ("u0", "u12", "u19")}
    monkeypatch.setattr(hybrid, "FULL_SCORING_MAX", 0)  # every catalogue is "large" now
    for user, answer in full.items():
        by_candidates = _for(org, user)
        assert _ids(by_candidates) == _ids(answer), (user, by_candidates, answer)
        assert [i["why"] for i in by_candidates["items"]] == [i["why"] for i in answer["items"]]
        assert np.allclose(
            [i["score"] for i in by_candidates["items"]], [i["score"] for i in answer["items"]], atol=1e-5
        )


def test_a_filter_the_candidates_barely_reach_is_filled_as_full_scoring_fills_it(shop, monkeypatch):
    """A large catalogue's hybrid scores candidates only (what the history reaches, the text neighbours, the
    most popular): a category none of them is in would be answered with fewer items than asked, or none. The
    best items within the filters by their user-independent part (``serving.FILTER_CANDIDATES`` of them, as
    the whole catalogue's most popular) join the candidates: here the same items, scores and order as full
    scoring."""
    from recommender.services import events

    org, _ = shop
    catalogue.items_upsert(
        organisation=org,
        rows=[
            {"id": f"G{i}", "title": f"Birthday card {i}", "categories": ["cards"], "price": "2.5"}
            for i in range(4)
        ],
    )
    when = (timezone.now() - timedelta(hours=1)).isoformat()
    rows = [  # another crowd buys the cards: nothing u0 bought leads to them
        {"id": f"card-{u}-{i}", "user": f"c{u}", "item": f"G{i}", "type": "purchase", "occurred_at": when}
        for u in range(6)
        for i in range(4)
        if (u + i) % 3
    ]
    assert not events.events_ingest(organisation=org, rows=rows).rejected
    train_now(org, "hybrid")
    asked = [  # a category (scored with the candidates from the start), a price range (filled after)
        {"category": "cards", "max_per_category": 0},
        {"min_price": Decimal("2"), "max_price": Decimal("3"), "max_per_category": 0},
    ]
    full = [_for(org, "u0", **filters) for filters in asked]
    assert all(sorted(_ids(answer)) == ["G0", "G1", "G2", "G3"] for answer in full)
    monkeypatch.setattr(hybrid, "FULL_SCORING_MAX", 0)  # every catalogue is "large" now
    monkeypatch.setattr(hybrid, "BASE_CANDIDATES", 1)  # and the most popular items are one: not a card
    monkeypatch.setattr(serving, "MAX_TEXT_CANDIDATES", 1)  # and the text neighbours one: a mug
    model = loaded_model(version=active_version(org, "recommender", "ranking"))
    monkeypatch.delattr(model, "_base_top_cache", raising=False)
    assert not {model.index[f"G{i}"] for i in range(4)} & set(model._base_top().tolist())
    rankings: list[bool] = []
    rank = serving._rank
    monkeypatch.setattr(serving, "_rank", lambda **kw: rankings.append(kw["more"] is not None) or rank(**kw))
    for filters, answer, passes in zip(asked, full, ([True], [False, True]), strict=True):
        rankings.clear()
        by_candidates = _for(org, "u0", **filters)
        assert _ids(by_candidates) == _ids(answer), filters
        assert rankings == passes, filters  # the category's items in the first pass; the range's in a second
        assert np.allclose(
            [i["score"] for i in by_candidates["items"]], [i["score"] for i in answer["items"]]
        )
        assert [i["why"] for i in by_candidates["items"]] == [i["why"] for i in answer["items"]]
    monkeypatch.setattr(serving, "FILTER_CANDIDATES", 2)  # of the four cards, the two best by their base
    capped = _ids(_for(org, "u0", **asked[0]))
    assert len(capped) == 2 and set(capped) <= {"G0", "G1", "G2", "G3"}
    monkeypatch.delattr(model, "_base_top_cache", raising=False)


def test_a_hybrid_that_gives_text_no_weight_skips_the_search_only_where_it_cannot_matter(shop, monkeypatch):
    """Text and two-tower weights and cold slots all 0: ranked without searching the text neighbours, and
    searched (ranked again) when the k-th pick does not score above what a neighbour could; the answers are
    those of the search every time."""
    org, _ = shop
    catalogue.items_upsert(
        organisation=org,
        rows=[{"id": f"N{i}", "title": f"Blue mug number {i}", "categories": ["mugs"]} for i in range(6)],
    )
    text.items_embed_pending(organisation=org)
    train_now(org, "hybrid")  # the N items came after the events: nobody bought them
    monkeypatch.setattr(hybrid, "FULL_SCORING_MAX", 0)  # the candidate path
    monkeypatch.setattr(hybrid, "BASE_CANDIDATES", 1)
    version = active_version(org, "recommender", "ranking")
    model = loaded_model(version=version)
    monkeypatch.setattr(model, "config", replace(model.config, cold_slots=0))
    monkeypatch.setitem(model.weights, "text", 0.0)
    monkeypatch.delattr(model, "_base_top_cache", raising=False)
    assert not model.text_neighbours_matter()
    searches = []
    search = text.text_neighbours
    monkeypatch.setattr(text, "text_neighbours", lambda **kw: searches.append(1) or search(**kw))
    cases = [("u0", 2, {}), ("u12", 2, {}), ("u19", 1, {}), ("u12", 5, {"category": "mugs"})]

    def answers() -> list[tuple[list[str], list[float], bool]]:
        out = []
        for user, k, filters in cases:
            before = len(searches)
            answer = serving.recommendations_for_user(
                organisation=org, user=user, k=k, filters=serving.Filters(**filters)
            )
            out.append(
                (_ids(answer), [round(i["score"], 5) for i in answer["items"]], len(searches) > before)
            )
        return out

    skipping = answers()
    monkeypatch.setattr(model, "text_neighbours_matter", lambda: True)  # the search every time
    searching = answers()
    assert [a[:2] for a in skipping] == [a[:2] for a in searching]
    assert all(searched for *_, searched in searching)
    assert not all(searched for *_, searched in skipping)  # the search was left out somewhere
    mugs = skipping[-1]
    assert mugs[2] and len(mugs[0]) == 5  # three mugs were bought: the two new ones came from the search
    assert any(i.startswith("N") for i in mugs[0])


@pytest.mark.django_db(transaction=True)  # the rebuilding thread reads committed rows on its own connection
def test_a_stale_snapshot_serves_at_once_while_one_thread_rebuilds_it(shop):
    org, _ = shop
    train_now(org)
    assert {"C", "D"} <= set(_ids(_for(org)))
    first = _snap(org)  # the first build: in the request, there is nothing to serve before it
    started, release, builds = threading.Event(), threading.Event(), []

    def hold(organisation_id: int, version: int) -> None:  # the build waits here until the test lets it go
        if organisation_id == org.pk:
            builds.append((threading.current_thread().name, version))
            started.set()
            release.wait(30)

    snapshot.BUILD_HOOKS.append(hold)
    try:
        catalogue.items_upsert(
            organisation=org,
            rows=[
                {"id": "C", "title": "White plate", "deleted": True},
                {"id": "D", "title": "Green plate", "available": False},
                {"id": "F", "title": "Big teapot", "categories": ["mugs"], "price": "30"},
            ],
        )
        version = serving_settings(organisation=org).catalogue_version
        began = time.monotonic()
        answer = _for(org)
        took = time.monotonic() - began
        assert started.wait(10) and not release.is_set()  # the rebuild is held, the request came back
        assert took < 10, took  # a request that waited would sit here until the hold's 30 s ran out
        assert _snap(org) is first and first.version < version and "C" in first.row  # the stale one serves
        assert "C" not in _ids(answer) and "D" not in _ids(answer)  # deleted, unavailable: never served
        assert {i["id"]: i["title"] for i in answer["items"]}.get("F") == "Big teapot"  # rows as they are now
        everything = _ids(_for(org, available_only=False))
        assert "D" in everything and "C" not in everything
        assert "C" not in _ids(_for(org, "u12")) and "C" not in _ids(_for(org, "u19"))
        assert len(builds) == 1 and builds[0][0].startswith("catalogue-snapshot-")  # one thread, not one each
    finally:
        release.set()
        snapshot.BUILD_HOOKS.remove(hold)
    assert snapshot.rebuild_wait(organisation=org, timeout=30)
    fresh = _snap(org)
    assert fresh is not first and fresh.version == version and "C" not in fresh.row
    assert not fresh.available[fresh.row["D"]] and fresh.titles[fresh.row["F"]] == "Big teapot"
    assert _snap(org) is fresh and len(builds) == 1  # used from now on, with no other build
    assert "C" not in _ids(_for(org)) and "D" in _ids(_for(org, available_only=False))
    snapshot.snapshots_clear()


def test_a_hybrid_that_knows_every_embedded_item_is_served_without_the_text_search(shop, monkeypatch):
    """Scoring its whole catalogue, the hybrid gets from the text neighbours only the items it does not know:
    while it knows every embedded item the index is not searched (same answers as with the search), and an
    item added after training is searched for and reached by its text again."""
    from core.ml.vector_index import VectorIndex

    org, _ = shop
    text.items_embed_pending(organisation=org)
    train_now(org, "hybrid")
    searches = []
    search = VectorIndex.search_pairs
    monkeypatch.setattr(VectorIndex, "search_pairs", lambda self, *a: searches.append(1) or search(self, *a))
    users = ["u0", "u12", "u19"]

    def answers() -> list[tuple[list[str], list[float]]]:
        out = []
        for user in users:
            answer = serving.recommendations_for_user(
                organisation=org, user=user, k=4, filters=serving.Filters()
            )
            out.append((_ids(answer), [round(i["score"], 6) for i in answer["items"]]))
        return out

    skipping = answers()
    assert searches == []
    monkeypatch.setattr(snapshot.Snapshot, "text_all_known", lambda self, model, text_model: False)
    assert answers() == skipping and len(searches) == len(users)  # the search would have added nothing
    monkeypatch.undo()
    monkeypatch.setattr(VectorIndex, "search_pairs", lambda self, *a: searches.append(1) or search(self, *a))
    catalogue.items_upsert(
        organisation=org, rows=[{"id": "N0", "title": "Blue mug with a plate", "categories": ["mugs"]}]
    )
    text.items_embed_pending(organisation=org)
    before = len(searches)
    answer = serving.recommendations_for_user(
        organisation=org, user="u12", k=4, filters=serving.Filters(category="mugs")
    )
    assert len(searches) == before + 1 and "N0" in _ids(answer)  # unknown to the model: came by its text
