"""A sliding-window rate limit in the shared cache, for any product: ``rate_limit_hit(key=..., limit=...)``.

A fixed window (one counter per clock minute) lets twice the limit through around a boundary: a full
minute's allowance at 0:59 and another at 1:00. Here the window slides: it is cut into ``slots`` counters
(1 s each for a minute), and a hit is allowed only if the hits of the current slot and of every slot that
overlaps the last ``window`` seconds stay within ``limit``. Counting one slot more than the window holds
(61 one-second slots for a minute) makes that bound hold over every ``window``-long span, never more.

Atomic enough under concurrency, on any cache with an atomic ``incr`` (Redis in production, locmem in the
embedded default): past slots no longer change, and the current slot's ``incr`` hands every concurrent
hit its own position, so at most ``limit`` pass; a refused hit takes its count back (nothing is counted
for a refused request) and tells how long until the oldest counted hits leave the window.
"""

import contextlib
import math
import time
from dataclasses import dataclass

from django.core.cache import cache


@dataclass(frozen=True)
class RateLimit:
    allowed: bool
    count: int  # hits in the window, this one included when allowed
    limit: int
    retry_after: float  # seconds until a refused hit would pass (0 when allowed)


def slot_key(key: str, slot: int) -> str:
    return f"ratelimit:{key}:{slot}"


def _incr(name: str, timeout: float) -> int:
    cache.add(name, 0, timeout=timeout)
    try:
        return cache.incr(name)
    except ValueError:  # evicted between add and incr
        cache.add(name, 0, timeout=timeout)
        return cache.incr(name)


def rate_limit_hit(
    *, key: str, limit: int, window: float = 60.0, slots: int = 60, now: float | None = None
) -> RateLimit:
    """Count one hit on ``key`` unless ``limit`` hits already fell in the last ``window`` seconds.

    ``now`` (seconds, ``time.time()`` by default) is there for tests and callers with their own clock.
    """
    now = time.time() if now is None else now
    width = window / slots
    current = math.floor(now / width)
    past = [slot_key(key, s) for s in range(current - slots, current)]  # oldest first
    stored = cache.get_many(past)
    counts = [int(stored.get(name, 0)) for name in past]
    if limit <= 0:
        return RateLimit(False, sum(counts), limit, window)
    position = _incr(slot_key(key, current), timeout=window + 2 * width)
    total = sum(counts) + position
    if total <= limit:
        return RateLimit(True, total, limit, 0.0)
    with contextlib.suppress(ValueError):  # expired meanwhile: nothing left to take back
        cache.decr(slot_key(key, current))
    return RateLimit(False, total - 1, limit, retry_after(counts, total - limit, current, slots, width, now))


def retry_after(counts: list[int], excess: int, current: int, slots: int, width: float, now: float) -> float:
    """Seconds until enough of the oldest counted hits (``counts`` of the past slots, oldest first) leave the
    window for ``excess`` more hits to fit."""
    freed = 0
    for offset, count in enumerate(counts):
        freed += count
        if freed >= excess:
            # slot current - slots + offset stops counting once current reaches it + slots + 1
            return (current + offset + 1) * width - now
    return (current + slots + 1) * width - now
