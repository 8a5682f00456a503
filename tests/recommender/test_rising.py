"""The hybrid's rising component (items whose recent sales beat their longer-run rate), in plain Python: no
database, no encoder (unit text vectors made here). One shop over 120 days: G sells 5 a day all along (the
most popular and the most trending), F 1 a day and K0-K5 one every third day, D sold early and stopped, R
sold once a week and then 3 a day from day 78 (rising); 30 customers who bought one of H0-H2 around day 60
buy R after day 91, the validation cut, so only the rising signal ranks what they buy next above G."""

import dataclasses

import numpy as np
import pytest

from core.errors import InvalidInput
from recommender import explain, hybrid, kinds
from recommender.services import catalogue, serving, snapshot

DAY = 86400.0
RISING = hybrid.HybridConfig(ease_lambdas=(10.0,), decay_days=(36500.0,), validation_users=10, cold_slots=0)


def _events() -> list[tuple[str, str, float, float]]:
    rows = []
    for day in range(120):
        rows += [(f"g{(5 * day + n) % 40}", "G", 1.0, day * DAY + n) for n in range(5)]
        rows.append((f"f{day % 10}", "F", 1.0, day * DAY + 10))
        if day % 3 == 0:  # six small flat sellers: a catalogue larger than the top 10
            rows += [(f"k{day % 4}", f"K{n}", 1.0, day * DAY + 50 + n) for n in range(6)]
        if day <= 40:
            rows += [(f"d{(4 * day + n) % 20}", "D", 1.0, day * DAY + 20 + n) for n in range(4)]
        if day >= 78:
            rows += [(f"r{(3 * day + n) % 20}", "R", 1.0, day * DAY + 30 + n) for n in range(3)]
        elif day % 7 == 0:
            rows.append(("r0", "R", 1.0, day * DAY + 30))
    for k in range(30):
        rows.append((f"v{k}", f"H{k % 3}", 1.0, (60 + k % 10) * DAY))
        rows.append((f"v{k}", "R", 1.0, (95 + k % 20) * DAY + 40))
    return rows


def _catalogue(items: list[str]) -> hybrid.Catalogue:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(items), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return hybrid.Catalogue(items=items, vectors=vectors, texts=[f"item {i}" for i in items])


def _shop() -> tuple[list[tuple[str, str, float, float]], hybrid.Catalogue]:
    train = _events()
    return train, _catalogue(sorted({i for _, i, _, _ in train}))


def test_rising_scores_items_selling_above_their_longer_run_rate_only():
    train, _ = _shop()
    items = sorted({i for _, i, _, _ in train})
    rising = dict(zip(items, hybrid._rising(train, items, 14.0), strict=True))
    assert rising["R"] == 1.0  # scaled: the most rising item is 1
    assert rising["G"] == 0.0 and rising["F"] == 0.0  # flat, however popular
    assert rising["D"] == 0.0  # falling items score nothing, not less than nothing
    short = [(u, i, w, t) for u, i, w, t in train if t >= 110 * DAY]  # 10 days: no longer run to compare with
    assert not hybrid._rising(short, items, 14.0).any()


def test_a_rising_item_outranks_a_more_popular_flat_one_only_when_rising_carries_weight():
    train, catalogue = _shop()
    model = hybrid._components(train, catalogue, RISING, 10.0, 36500.0)
    model.weights.update({"collab": 0.0, "text": 0.0, "popularity": 0.3, "trend": 0.3})
    r, g = model.index["R"], model.index["G"]
    assert model.scores({"H0": 1.0})[g] > model.scores({"H0": 1.0})[r]
    model.weights["rising"] = 1.0
    assert model.scores({"H0": 1.0})[r] > model.scores({"H0": 1.0})[g]
    assert model.scores({})[r] > model.scores({})[g]  # also with no history (the global part alone)
    assert "R" in model.items[: model.n_collab] and model.why({"H0": 1.0}, "R") in ([], ["H0"])


def test_rising_weight_zero_gives_the_ranking_without_the_component_to_the_bit():
    train, catalogue = _shop()
    with_rising = hybrid._components(train, catalogue, RISING, 10.0, 36500.0)
    without = hybrid._components(train, catalogue, hybrid.HybridConfig(rising_days=0), 10.0, 36500.0)
    assert with_rising.rising is not None and with_rising.rising.any() and without.rising is None
    weights = {"text": 0.6, "popularity": 0.1, "trend": 0.2, "rising": 0.0}
    with_rising.weights.update(weights)
    without.weights.update(weights)
    for history in ({"H0": 1.0, "G": 1.0}, {"F": 2.0}, {}):
        assert np.array_equal(with_rising.scores(history), without.scores(history))
        one = with_rising.candidate_scores(history, [0, 1], np.zeros(0, np.float32), [])
        other = without.candidate_scores(history, [0, 1], np.zeros(0, np.float32), [])
        assert all(np.array_equal(a, b) for a, b in zip(one, other, strict=True))


def test_validation_gives_rising_its_weight_and_the_served_ranking_follows():
    train, catalogue = _shop()
    model = hybrid.fit(config=RISING, train=train, catalogue=catalogue)
    assert model.weights["rising"] > 0 and model.validation["users"] == 10  # sampled from the 30
    scores = model.scores({"H1": 1.0})
    assert scores[model.index["R"]] > scores[model.index["G"]]
    off = hybrid.fit(config=dataclasses.replace(RISING, rising_days=0), train=train, catalogue=catalogue)
    assert off.weights["rising"] == 0.0 and off.validation["ndcg@10"] < model.validation["ndcg@10"]


def test_rising_is_saved_and_an_older_model_without_it_still_loads(tmp_path):
    train, catalogue = _shop()
    model = hybrid._components(train, catalogue, RISING, 10.0, 36500.0)
    model.weights.update({"popularity": 0.2, "rising": 1.0})
    hybrid.save(model, tmp_path)
    loaded = hybrid.load(tmp_path)
    assert np.array_equal(loaded.scores({"H2": 1.0}), model.scores({"H2": 1.0}))
    (tmp_path / "rising.npy").unlink()
    older = hybrid.load(tmp_path)
    model.weights["rising"] = 0.0
    assert older.rising is None and np.array_equal(older.scores({"H2": 1.0}), model.scores({"H2": 1.0}))


@pytest.mark.parametrize("value", [-1, 3651, "soon"])
def test_a_bad_rising_days_is_refused_with_a_clear_error(value):
    with pytest.raises(InvalidInput, match="rising_days"):
        kinds.hybrid_config({"method": "hybrid", "rising_days": value})
    assert kinds.hybrid_config({"method": "hybrid", "rising_days": 7}).rising_days == 7
    assert kinds.hybrid_config({"method": "hybrid", "rising_days": 0}).rising_days == 0


@pytest.mark.django_db
def test_an_item_served_for_its_rising_sales_says_so(make_org):
    """Through serving's own ranking, picking and explaining, over a real catalogue snapshot of the shop."""
    org, _ = make_org()
    train, items = _shop()
    model = hybrid._components(train, items, RISING, 10.0, 36500.0)
    model.weights.update({"collab": 0.2, "text": 0.0, "popularity": 0.3, "trend": 0.3, "rising": 1.0})
    catalogue.items_upsert(organisation=org, rows=[{"id": i, "title": f"Item {i}"} for i in model.items])
    snap = snapshot.catalogue_snapshot(organisation=org, version=snapshot.catalogue_version(org))
    history = {"H0": 1.0}
    ranked = serving._rank(organisation=org, snap=snap, model=model, history=history, skip=set(history), k=5)
    picked = serving._pick(
        snap=snap, ranked=ranked, k=5, filters=serving.Filters(), skip=set(history), limit=None
    )
    why = serving._why(model=model, ranked=ranked, snap=snap, picked=picked, history=history)
    answer = serving._answer(organisation=org, snap=snap, version=None, model=model, picked=picked, why=why)
    first = answer["items"][0]
    assert first["id"] == "R" and first["reason"]["kind"] == "rising"
    assert first["reason"]["detail"] == "sales up in the last 14 days" and first["reason"]["items"] == []
    parts = model.parts(history, "R")
    assert max(parts, key=parts.__getitem__) == "rising"  # the largest part of its score, as the reason says
    every = [sum(model.parts(history, item).values()) for item in model.items]
    assert np.allclose(every, model.scores(history), atol=1e-5)  # the parts are the score, split
    assert all(item["reason"]["detail"] for item in answer["items"])
    g = next(item for item in answer["items"] if item["id"] == "G")  # flat: there by its steady sales
    assert g["reason"]["kind"] in {"trend", "popular"} and "(ranked by" in g["reason"]["detail"]
    model.weights["rising"] = 0.0  # the same item without the rising component: another reason, never empty
    reason = explain.reason_of(
        model=model, history=history, item="R", why=model.why(history, "R"), by_text=False
    )
    assert reason.kind != "rising"
