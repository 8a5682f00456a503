"""The hybrid's training settings a tenant gives (``recommender.kinds.hybrid_config``: every documented one
accepted, bad values refused with the setting named) and a shop smaller than the top 10 (validation ranks all
of its items instead of failing)."""

import numpy as np
import pytest

from core.errors import InvalidInput
from recommender import hybrid, kinds

DAY = 86400.0


def test_the_documented_settings_are_accepted():
    cfg = kinds.hybrid_config(
        {
            "method": "hybrid",
            "validation": "user",
            "validation_share": 0.2,
            "history_decays": [1, 0.99],
            "sequence_window": 5,
            "sequence_recent": 20,
            "sequence_decay": 0.8,
        }
    )
    assert (cfg.validation, cfg.validation_share, cfg.history_decays) == ("user", 0.2, (1.0, 0.99))
    assert (cfg.sequence_window, cfg.sequence_recent, cfg.sequence_decay) == (5, 20, 0.8)


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("validation", "yesterday", "validation"),
        ("validation_share", 0.9, "validation_share"),
        ("validation_share", "a fifth", "Bad training settings"),
        ("history_decays", [0.1], "history_decays"),
        ("history_decays", ["slow"], "Bad training settings"),
        ("sequence_window", 1000, "sequence_window"),
        ("sequence_decay", 0, "sequence_decay"),
        ("tower_threads", 4, "Unknown training settings: tower_threads"),
    ],
)
def test_a_bad_setting_is_refused_with_a_clear_error(setting, value, named):
    with pytest.raises(InvalidInput, match=named):
        kinds.hybrid_config({"method": "hybrid", setting: value})


def test_a_shop_with_fewer_items_than_the_top_ten_trains():
    """Six items and 24 customers: the validation split has enough users, and its NDCG@10 ranks all six."""
    items = [f"I{n}" for n in range(6)]
    rows = []
    for user in range(24):
        for step in range(4):  # each customer buys four of the six, a day apart, the last one after the cut
            item = items[(user + step) % 6]
            rows.append((f"u{user}", item, 1.0, (40 + 10 * step + user % 5) * DAY))
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    catalogue = hybrid.Catalogue(items=items, vectors=vectors, texts=[f"item {i}" for i in items])
    config = hybrid.HybridConfig(
        ease_lambdas=(10.0,), decay_days=(36500.0,), validation_users=10, validation_days=12, cold_slots=0
    )
    model = hybrid.fit(config=config, train=rows, catalogue=catalogue)
    assert model.validation["ndcg@10"] > 0, model.validation  # the validation ran (no fallback) and ranked
