"""Behaviour as text pairs: what tunes the item-text encoder (a LoRA adapter) on what customers take together.

Each user's distinct items in the order they first came to them; every item is paired with the next
``window`` items of that order (a basket's items, a session's next steps), as ``(text, text)``. Pairs whose
two texts are the same say nothing and are left out, and each pair is kept once (case aside: a ``pairs``
dataset keeps no duplicates). Beyond ``max_pairs`` the pairs made by the most users are kept (a seeded draw
among equals): a uniform sample of distinct pairs is mostly pairs made once, noise, and an adapter tuned on
it ranked new items worse than the encoder it started from (BENCHMARKS.md section 23). The embedding kind
trains on them with in-batch negatives (``core.ml.embedder``), which brings items bought together near each
other in the text space that the hybrid's text part, the two-tower model and cold items are ranked in. Pure
functions, no Django.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

WINDOW = 2
MAX_PAIRS = 20_000
SEED = 0
# How the pairs dataset is split (train/validation/test percentages): the adapter needs most of them.
SPLIT = "90/5/5"
# The embedding kind's settings for the adapter: one pass over the pairs at a learning rate low enough that it
# keeps what the encoder knows of words (cold items depend on it; BENCHMARKS.md section 23 compares 5e-4).
TUNE_CONFIG: dict[str, Any] = {
    "method": "lora",
    "epochs": 1,
    "batch_size": 64,
    "max_length": 32,
    "learning_rate": 1e-4,
}


def behaviour_pairs(
    events: Iterable[tuple[str, str, float]],
    texts: Mapping[str, str],
    *,
    window: int = WINDOW,
    max_pairs: int = MAX_PAIRS,
    seed: int = SEED,
) -> tuple[list[tuple[str, str]], int]:
    """``(pairs, found)``: up to ``max_pairs`` distinct text pairs from ``(user, item, time)`` events, and how
    many distinct pairs there were before the cap. Items without a text in ``texts`` are skipped."""
    if window < 1 or max_pairs < 1:
        raise ValueError("window and max_pairs must be at least 1")
    timeline: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for user, item, when in events:
        if item in texts:
            timeline[user].append((when, item))
    pairs: dict[tuple[str, str], tuple[str, str]] = {}  # casefolded -> the first spelling met
    made: Counter[tuple[str, str]] = Counter()  # casefolded -> how many users made the pair
    for user in sorted(timeline):
        seen: set[str] = set()
        order: list[str] = []
        for _, item in sorted(timeline[user]):
            if item not in seen:
                seen.add(item)
                order.append(item)
        for k, first in enumerate(order):
            for then in order[k + 1 : k + 1 + window]:
                a, b = texts[first], texts[then]
                if a.casefold() != b.casefold():
                    key = (a.casefold(), b.casefold())
                    pairs.setdefault(key, (a, b))
                    made[key] += 1
    rng = random.Random(seed)
    # the pairs most users made; among equals, a seeded draw
    keys = sorted((-made[key], rng.random(), n) for n, key in enumerate(pairs))
    spelled = list(pairs.values())
    kept = [spelled[n] for *_, n in keys[:max_pairs]]
    rng.shuffle(kept)  # the weights decided which; the order says nothing (a dataset's split takes slices)
    return kept, len(spelled)
