"""The hybrid's sequence component (what users went on to next) and its per-user validation split, in plain
Python: no database, no encoder (unit text vectors made here)."""

import numpy as np
import pytest

from recommender import hybrid

DAY = 86400.0


def _catalogue(items: list[str]) -> hybrid.Catalogue:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(items), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return hybrid.Catalogue(items=items, vectors=vectors, texts=[f"item {i}" for i in items])


def _events() -> list[tuple[str, str, float, float]]:
    """40 users watch a series in order (S1, S2, S3) between unrelated items; everyone also watches P."""
    rows = []
    for u in range(40):
        user, start = f"u{u}", u * 10 * DAY
        order = [f"x{u % 7}", "S1", "S2", "S3", "P", f"y{u % 5}"]
        rows += [(user, item, 1.0, start + n * DAY) for n, item in enumerate(order)]
    return rows


def test_the_sequence_points_forward_and_serving_reads_the_most_recent_items():
    train = _events()
    items = sorted({i for _, i, _, _ in train})
    config = hybrid.HybridConfig(ease_lambdas=(10.0,), decay_days=(36500.0,), sequence_window=1, cold_slots=0)
    model = hybrid._components(train, _catalogue(items), config, 10.0, 36500.0)
    s1, s2, s3 = (model.index[i] for i in ("S1", "S2", "S3"))
    assert model.sequence[s1, s2] > 0.9 and model.sequence[s2, s1] == 0  # forward only
    assert model.sequence[s2, s3] > 0.9
    model.weights.update({"collab": 0.0, "text": 0.0, "sequence": 1.0})
    after_s1 = model.scores({"S1": 1.0, "x1": 1.0})  # most recent first
    assert model.items[int(np.argmax(after_s1))] == "S2"
    after_s2 = model.scores({"S2": 1.0, "S1": 1.0})
    assert after_s2[s3] > after_s2[model.index["P"]]
    assert model.why({"S2": 1.0, "S1": 1.0}, "S3")[0] == "S2"
    assert model.why({"S1": 1.0}, "S3") == []  # S1 is never followed by S3 within one step


def test_per_user_validation_holds_out_each_users_last_items():
    train = _events()
    config = hybrid.HybridConfig(validation="user", validation_share=0.3)  # 2 of 6
    before, val = hybrid.time_split(train, config)
    assert len(val.histories) == 40
    for history, targets in zip(val.histories, val.targets, strict=True):
        assert len(targets) == 2 and "P" in targets and not targets & history.keys()
        assert next(iter(targets - {"P"})).startswith("y")
        assert list(history)[0] == "S3"  # most recent first
    assert len(before) == 40 * 4
    with pytest.raises(ValueError, match="validation must be"):
        hybrid.HybridConfig(validation="random").validate()


def test_a_fitted_sequence_is_saved_and_an_older_model_without_one_still_loads(tmp_path):
    train = _events()
    items = sorted({i for _, i, _, _ in train})
    config = hybrid.HybridConfig(
        validation="user", ease_lambdas=(10.0,), decay_days=(36500.0,), validation_users=10, cold_slots=0
    )
    model = hybrid.fit(config=config, train=train, catalogue=_catalogue(items))
    assert model.sequence is not None and "sequence" in model.weights
    hybrid.save(model, tmp_path)
    loaded = hybrid.load(tmp_path)
    history = {"S1": 1.0, "x2": 1.0}
    assert np.allclose(loaded.scores(history), model.scores(history))
    for name in ("data", "indices", "indptr"):
        (tmp_path / f"sequence_{name}.npy").unlink()
    older = hybrid.load(tmp_path)
    assert older.sequence is None and not older.sequence_scores(history).any()


def test_a_history_decay_weighs_the_most_recent_items_most_down_to_a_floor():
    train = _events()
    items = sorted({i for _, i, _, _ in train})
    model = hybrid._components(train, _catalogue(items), hybrid.HybridConfig(), 10.0, 36500.0)
    history = {item: 1.0 for item in items}  # most recent first
    assert (model.vector(history)[[model.index[i] for i in items]] == 1.0).all()
    model.setting["history_decay"] = 0.5
    x = model.vector(history)
    assert np.allclose([x[model.index[i]] for i in items[:4]], [1.0, 0.5, 0.25, hybrid.HISTORY_FLOOR])
    with pytest.raises(ValueError, match="history_decays"):
        hybrid.HybridConfig(history_decays=(0.2,)).validate()


def test_a_served_requests_shares_are_those_computed_afresh_and_read_once():
    """What ``why`` and ``parts`` read of one history (``_explaining``) comes from the scoring call that
    served it, with each item's shares computed once; the figures are those of a model that computes
    everything afresh, on the full-scoring and the candidate path alike."""
    train = _events()
    items = sorted({i for _, i, _, _ in train})
    config = hybrid.HybridConfig(ease_lambdas=(10.0,), decay_days=(36500.0,), sequence_window=2, cold_slots=0)
    model = hybrid._components(train, _catalogue(items), config, 10.0, 36500.0)
    model.weights.update({"collab": 1.0, "text": 0.5, "sequence": 1.0})
    history = {"S2": 1.0, "x3": 0.5, "S1": 1.0, "P": 0.2}  # most recent first
    fresh = [(model.why(history, i), model.parts(history, i)) for i in items]
    for serve in (
        lambda: model.scores_with(history, np.zeros(0, np.float32), [], explain=True),
        lambda: model.candidate_scores(history, list(range(len(items))), np.zeros(0, np.float32), []),
    ):
        model._last = ((), None)
        serve()
        assert model._last[0] == tuple(history.items()) and not model._last[1]["shares"]
        for item, (why, parts) in zip(items, fresh, strict=True):
            assert model.why(history, item) == why
            served = model.parts(history, item)
            assert served.keys() == parts.keys()
            assert all(served[k] == pytest.approx(parts[k], abs=1e-6) for k in parts)
        assert len(model._last[1]["shares"]) == len(items)  # each item's shares computed once, then read
    rows = np.array([model.index["S1"], model.index["S2"]])
    entries = hybrid.RowEntries.of(model.sequence, rows)  # the rows' entries, read from the matrix's arrays
    matrix = model.sequence[rows]
    weights = np.array([0.5, 2.0], dtype=np.float32)
    assert np.allclose(entries.weighted_sum(weights, len(items)), matrix.T @ weights, atol=1e-6)
    for j in range(len(items)):
        assert np.array_equal(entries.columns_of(np.array([j]))[:, 0], matrix[:, [j]].toarray().ravel())


def test_the_picks_shares_made_together_are_those_made_one_at_a_time():
    """``shares_prefetch`` (a request's picks before their ``why`` and ``parts``) gives each item the very
    numbers ``_shares`` gives it alone, collab, text and sequence alike; ``RowEntries.columns_of`` is the
    matrix's columns."""
    train = _events()
    items = sorted({i for _, i, _, _ in train})
    config = hybrid.HybridConfig(ease_lambdas=(10.0,), decay_days=(36500.0,), sequence_window=2, cold_slots=0)
    model = hybrid._components(train, _catalogue(items), config, 10.0, 36500.0)
    model.weights.update({"collab": 1.0, "text": 0.5, "sequence": 1.0})
    for history in ({"S2": 1.0, "x3": 0.5, "S1": 1.0, "P": 0.2}, {"S3": 2.0}, {"y1": 1.0, "S1": 0.3}):
        model._last = ((), None)
        alone = {}
        for item in items:
            model.why(history, item)
            alone[item] = model._last[1]["shares"][model.index[item]]
        model._last = ((), None)
        model.scores_with(history, np.zeros(0, np.float32), [], explain=True)
        picks = [items[n] for n in (5, 0, 9, 2)] + ["not an item"]
        model.shares_prefetch(history, picks)
        together = model._last[1]["shares"]
        assert sorted(together) == sorted(model.index[i] for i in picks[:4])
        for item in picks[:4]:
            mine, theirs = together[model.index[item]], alone[item]
            assert mine.keys() == theirs.keys()
            assert all(np.array_equal(mine[k], theirs[k]) for k in theirs), (history, item)
    rows = np.array([model.index["S1"], model.index["x3"], model.index["S2"]])
    entries = hybrid.RowEntries.of(model.sequence, rows)
    js = np.array([7, 1, 4, 0, len(items) - 1])
    block = entries.columns_of(js)
    for n, j in enumerate(js):
        assert np.array_equal(block[:, n], model.sequence[rows][:, [int(j)]].toarray().ravel())
