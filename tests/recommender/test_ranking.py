"""The plain-Python baselines (``recommender.ranking``): split, fit, explain, evaluate, save and load."""

import numpy as np
import pytest

from recommender import ranking


def _events() -> list[ranking.Interaction]:
    rows = []
    for u in range(12):
        basket = ["a", "b", "c"] if u % 2 else ["x", "y", "z"]
        turn = (u // 2) % 3  # each item comes last for some users and earlier for others
        basket = basket[turn:] + basket[:turn]
        for t, item in enumerate(basket):
            rows.append((f"u{u}", item, 1.0, float(100 * u + t)))
    return rows


def test_leave_last_out_holds_out_each_users_latest_new_item():
    train, held_out = ranking.split_leave_last_out(_events())
    assert held_out[0] == (["x", "y"], "z") and len(held_out) == 12  # u0, sorted by user
    assert all(item != "c" for user, item, _, _ in train if user == "u1")
    assert len(train) == 24


@pytest.mark.parametrize("method", ["itemknn", "ease"])
def test_collaborative_models_find_the_basket_and_say_why(method, tmp_path):
    train, held_out = ranking.split_leave_last_out(_events())
    model = ranking.fit(config=ranking.RankConfig(method=method, ease_lambda=1.0), train=_events())
    model.evaluation = ranking.fit(config=ranking.RankConfig(method=method, ease_lambda=1.0), train=train)
    scores = model.scores({"a": 1.0})
    best = [model.items[i] for i in np.argsort(-scores) if model.items[i] != "a"][:2]
    assert set(best) == {"b", "c"} and model.why({"a": 1.0, "x": 1.0}, "b") == ["a"]
    metrics = ranking.evaluate(model=model, held_out=held_out)
    assert metrics["hr@10"] == 1.0 and metrics["ndcg@10"] == 1.0  # the rest of the basket ranks first
    ranking.save(model, tmp_path)
    loaded = ranking.load(tmp_path)
    assert loaded.items == model.items and loaded.evaluation is not None
    assert np.allclose(loaded.scores({"a": 1.0}), scores)


def test_popularity_decays_and_bad_settings_are_refused():
    rows = [("u1", "old", 1.0, 0.0), ("u2", "old", 1.0, 0.0), ("u3", "new", 1.0, 30 * 86400.0)]
    model = ranking.fit(config=ranking.RankConfig(method="popularity"), train=rows)
    assert model.items[int(np.argmax(model.scores({})))] == "new" and model.why({"old": 1}, "new") == []
    with pytest.raises(ValueError, match="method"):
        ranking.fit(config=ranking.RankConfig(method="bpr"), train=rows)
    with pytest.raises(ValueError, match="no events"):
        ranking.fit(config=ranking.RankConfig(), train=[])
