"""Behaviour as text pairs: what tunes the item-text encoder (a LoRA adapter) on what customers take together.

Each user's distinct items in the order they first came to them; every item is paired with the next
``window`` items of that order (a basket's items, a session's next steps), as ``(text, text)``. Pairs whose
two texts are the same say nothing and are left out. A seeded shuffle keeps at most ``max_pairs`` of them,
so an item pair bought by many users keeps its share; the embedding kind trains on them with in-batch
negatives (``core.ml.embedder``), which makes items bought together near each other in the text space the
hybrid's text part, the two-tower model and cold items are ranked in. Pure functions, no Django.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping

WINDOW = 2
MAX_PAIRS = 20_000
SEED = 0


def behaviour_pairs(
    events: Iterable[tuple[str, str, float]],
    texts: Mapping[str, str],
    *,
    window: int = WINDOW,
    max_pairs: int = MAX_PAIRS,
    seed: int = SEED,
) -> tuple[list[tuple[str, str]], int]:
    """``(pairs, found)``: up to ``max_pairs`` text pairs from ``(user, item, time)`` events, and how many
    there were before the cap. Items without a text in ``texts`` are skipped."""
    if window < 1 or max_pairs < 1:
        raise ValueError("window and max_pairs must be at least 1")
    timeline: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for user, item, when in events:
        if item in texts:
            timeline[user].append((when, item))
    pairs: list[tuple[str, str]] = []
    for user in sorted(timeline):
        seen: set[str] = set()
        order: list[str] = []
        for _, item in sorted(timeline[user]):
            if item not in seen:
                seen.add(item)
                order.append(item)
        for k, first in enumerate(order):
            for then in order[k + 1 : k + 1 + window]:
                if texts[first] != texts[then]:
                    pairs.append((texts[first], texts[then]))
    found = len(pairs)
    random.Random(seed).shuffle(pairs)
    return pairs[:max_pairs], found
