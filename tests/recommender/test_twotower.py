"""The two-tower model (``recommender.twotower``) alone and as the hybrid's component, in plain Python on a
tiny synthetic shop: two kinds of item (mugs, plates) whose text vectors lie near their kind's direction,
users who buy four items of one kind one after another, and a new mug nobody has bought."""

import dataclasses

import numpy as np
import pytest

from core.errors import InvalidInput
from recommender import hybrid, kinds, ranking, twotower
from recommender.kinds import hybrid_config

KINDS = {"mug": 0, "plate": 1}
TINY = twotower.TowerConfig(dim=16, epochs=12, batch=64, negatives=8, recent=10, lr=0.02, seed=3)


def _shop(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(32, dtype=np.float32)[:2]
    items = [f"{kind}{n}" for kind in KINDS for n in range(6)]

    def vector(kind: str) -> np.ndarray:
        v = centres[KINDS[kind]] + 0.3 * rng.standard_normal(32).astype(np.float32)
        return v / np.linalg.norm(v)

    texts = {item: vector(item.rstrip("0123456789")) for item in items} | {"mug-new": vector("mug")}
    train = []
    for u in range(80):
        kind = "mug" if u % 2 == 0 else "plate"
        for step, n in enumerate(rng.permutation(6)[:4]):
            train.append((f"u{u}", f"{kind}{n}", 1.0, 1_000_000.0 + 86400.0 * (u % 7) + 86400.0 * step))
    names = sorted(texts)
    catalogue = hybrid.Catalogue(names, np.stack([texts[i] for i in names]), [f"a {i}" for i in names])
    return train, catalogue


def _tower(train, catalogue, config=TINY) -> twotower.TowerModel:
    items = hybrid._order(train, catalogue)
    return twotower.train(
        config=config, events=train, items=items, text=hybrid._vectors(items, catalogue), epochs=config.epochs
    )


@pytest.fixture(scope="module")
def trained():
    train, catalogue = _shop()
    return train, catalogue, _tower(train, catalogue)


def test_the_towers_rank_an_unseen_item_of_the_users_kind_above_the_other_kind(trained):
    train, _, tower = trained
    history = {"mug3": 1.0, "mug1": 1.0, "mug0": 1.0}  # most recent first
    scores = tower.scores(history)
    mugs = [tower.index[f"mug{n}"] for n in (2, 4, 5)]
    plates = [tower.index[f"plate{n}"] for n in range(6)]
    assert scores[mugs].min() > scores[plates].max()
    assert 0 < tower.decay < 1 and tower.epochs == TINY.epochs
    untrained = _tower(train, trained[1], twotower.TowerConfig(**{**TINY.__dict__, "epochs": 1, "lr": 1e-5}))
    assert tower.scores(history)[mugs].mean() - tower.scores(history)[plates].mean() > (
        untrained.scores(history)[mugs].mean() - untrained.scores(history)[plates].mean()
    )  # training moved the mugs up: the text alone does not account for the margin


def test_a_cold_item_is_reached_through_its_text(trained):
    _, _, tower = trained
    cold = tower.index["mug-new"]
    assert cold >= len({i for _, i, _, _ in trained[0]})  # after every item with events: no id part
    scores = tower.scores({"mug2": 1.0, "mug5": 1.0})
    assert scores[cold] > max(scores[tower.index[f"plate{n}"]] for n in range(6))
    assert tower.scores({"plate0": 1.0})[cold] < max(
        tower.scores({"plate0": 1.0})[tower.index[f"plate{n}"]] for n in range(1, 6)
    )


def test_examples_take_only_strictly_earlier_items_as_the_history():
    train = [("u", "a", 1.0, 1.0), ("u", "b", 1.0, 1.0), ("u", "c", 1.0, 2.0), ("u", "a", 1.0, 3.0)]
    targets, histories = twotower.examples(train, {"a": 0, "b": 1, "c": 2}, recent=3, pad=3)
    assert targets.tolist() == [2]  # a and b were bought together: neither is the other's past
    assert histories.tolist() == [[1, 0, 3]]  # most recent first (b before a at the same time: by index)


def test_save_and_load_give_the_same_scores(trained, tmp_path):
    _, _, tower = trained
    twotower.save(tower, tmp_path)
    loaded = twotower.load(tmp_path, tower.items)
    assert loaded is not None and loaded.epochs == tower.epochs and loaded.decay == pytest.approx(tower.decay)
    history = {"plate1": 1.0, "mug0": 0.5}
    assert np.allclose(loaded.scores(history), tower.scores(history))
    with pytest.raises(ValueError, match="do not match"):
        twotower.load(tmp_path, tower.items[:-1])
    (tmp_path / "older").mkdir()
    assert twotower.load(tmp_path / "older", tower.items) is None


def test_the_hybrid_learns_a_tower_weight_and_saves_it(tmp_path):
    train, catalogue = _shop(seed=1)
    config = hybrid.HybridConfig(
        ease_lambdas=(10.0,),
        decay_days=(36500.0,),
        validation="user",
        validation_share=0.25,
        tower_epochs=6,
        tower_dim=16,
        cold_slots=0,
    )
    model = hybrid.fit(config=config, train=train, catalogue=catalogue)
    assert 1 <= model.setting["tower_epochs"] <= 6 and "tower_ndcg@10" in model.validation
    assert "tower" in model.weights
    if not model.weights["tower"]:  # the validation split chose no tower: the final model carries none
        assert model.tower is None
        model.tower = hybrid._tower(model, train, config, epochs=2)
        model.weights["tower"] = 0.5
    history = {"mug1": 1.0, "mug4": 1.0}
    hybrid.save(model, tmp_path)
    loaded = hybrid.load(tmp_path)
    assert loaded.tower is not None and np.allclose(loaded.scores(history), model.scores(history))
    every = list(range(len(model.items)))  # serving a large catalogue scores candidates: here every item
    candidates, scores, _ = loaded.candidate_scores(history, every, np.zeros(0, np.float32), [])
    assert np.allclose(scores, model.scores(history)[candidates], atol=1e-5)
    parts = [loaded.parts(history, item) for item in loaded.items]  # what the served reason compares
    assert all(p["tower"] for p in parts)
    assert np.allclose([sum(p.values()) for p in parts], model.scores(history), atol=1e-5)  # they add up
    without = model.scores(history) - model.weights["tower"] * _scaled(model.tower.scores(history))
    plain = dataclasses.replace(model, tower=None)  # what an artifact without it scores
    assert np.allclose(plain.scores(history), without, atol=1e-5)


def _scaled(values: np.ndarray) -> np.ndarray:
    return values / hybrid._scale(values)


def test_an_artifact_from_before_the_tower_still_loads(tmp_path):
    train, catalogue = _shop()
    model = hybrid._components(train, catalogue, hybrid.HybridConfig(), 10.0, 36500.0)
    model.weights = {k: v for k, v in model.weights.items() if k != "tower"}  # older weights had no tower
    hybrid.save(model, tmp_path)
    assert not (tmp_path / "tower.json").exists()
    loaded = hybrid.load(tmp_path)
    assert loaded.tower is None and np.allclose(loaded.scores({"mug1": 1.0}), model.scores({"mug1": 1.0}))


def test_bad_tower_settings_are_refused():
    with pytest.raises(ValueError, match="tower_epochs"):
        hybrid.HybridConfig(tower_epochs=101).validate()
    with pytest.raises(ValueError, match="tower dim"):
        hybrid.HybridConfig(tower_epochs=5, tower_dim=4).validate()
    assert hybrid_config({"method": "hybrid", "tower_epochs": 5, "tower_dim": 32}).tower().dim == 32
    train, catalogue = _shop()
    with pytest.raises(ValueError, match="at least 1"):
        hybrid.fit_tower(config=hybrid.HybridConfig(), train=train, catalogue=catalogue)
    one_each = [(f"u{n}", "mug0", 1.0, 1.0) for n in range(5)]
    with pytest.raises(ValueError, match="nothing to train"):
        _tower(one_each, catalogue)


class _Reporter:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def progress(self, fraction: float, message: str, force: bool = False) -> None:
        self.messages.append(message)


def test_the_kind_trains_the_hybrid_with_a_tower_as_a_job_would(tmp_path):
    train, catalogue = _shop(seed=2)
    train, held_out = ranking.split_leave_last_out(train)
    rows = {"train": [kinds.encode_interaction(r) for r in train], "test": kinds.held_out_rows(held_out)}
    config = {
        "method": "hybrid",
        "ease_lambdas": [10],
        "decay_days": [36500],
        "tower_epochs": 4,
        "tower_dim": 16,
    }
    kind = kinds.RecommenderKind()
    assert kind.check_settings(config=config, search=None, follow_up=None) == config
    reporter = _Reporter()
    trained = kind.train(
        job=None,
        rows=rows | {"catalogue": catalogue},
        config=config,
        search=None,
        runtime=None,
        progress=None,
        reporter=reporter,
    )
    assert any(m.startswith("two-tower epoch 1") for m in reporter.messages)
    assert "tower_epochs" in trained.model.setting and trained.metrics["ndcg@10"] > 0
    assert (trained.model.tower is None) == (not trained.model.weights["tower"])
    with pytest.raises(InvalidInput, match="tower_epochs"):
        kind.check_settings(config={**config, "tower_epochs": 500}, search=None, follow_up=None)
