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

With the cache in Redis, one hit is one Lua script on the cache's own keys (``_HIT``): the past slots read,
the current one counted and, past the limit, taken back, in one round trip. Through the cache's API it was
three round trips and sixty keys made and decoded in Python (1.4 ms of CPU per hit on a 2-core machine,
a tenth of that as a script: every chat message and API request pays it). A caller may have other keys of
that Redis read in the same call (``read``: a request's generation tokens, ``core.generations.prefetched``).
"""

import contextlib
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class RateLimit:
    allowed: bool
    count: int  # hits in the window, this one included when allowed
    limit: int
    retry_after: float  # seconds until a refused hit would pass (0 when allowed)
    read: tuple[Any, ...] | None = None  # the values of ``rate_limit_hit``'s ``read`` keys (None: not read)


def slot_key(key: str, slot: int) -> str:
    return f"ratelimit:{key}:{slot}"


def _incr(name: str, timeout: float) -> int:
    cache.add(name, 0, timeout=timeout)
    try:
        return cache.incr(name)
    except ValueError:  # evicted between add and incr
        cache.add(name, 0, timeout=timeout)
        return cache.incr(name)


# ARGV: the slots' name less the slot number, the current slot, the number of past slots, the limit and the
# current slot's time to live; KEYS: other keys to read. Returns {allowed (1/0), hits in the window, the past
# slots' counts when refused (oldest first), the KEYS' values}. The counts are the cache's own integers
# (Django's Redis cache stores an int as its digits), so this and ``core.billing.deferred``'s admission share
# the counters with the cache's path.
_HIT = """
local prefix, current, slots = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local read = {}
if #KEYS > 0 then read = redis.call('MGET', unpack(KEYS)) end
local names = {}
for s = current - slots, current - 1 do names[#names + 1] = prefix .. s end
local values = redis.call('MGET', unpack(names))
local counts, total = {}, 0
for i = 1, #values do
  local c = tonumber(values[i]) or 0
  counts[i] = c
  total = total + c
end
if limit <= 0 then return {0, total, counts, read} end
local slot = prefix .. current
local position = redis.call('INCR', slot)
if position == 1 then redis.call('EXPIRE', slot, ttl) end
if total + position <= limit then return {1, total + position, {}, read} end
redis.call('DECR', slot)
return {0, total + position - 1, counts, read}
"""

_lock = threading.Lock()
_script: Any = None


def _redis_script() -> Any:
    """The script on the cache's Redis (None: the cache is not Redis)."""
    global _script
    if not settings.REDIS_URL or not settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        return None
    with _lock:
        if _script is None:
            import redis

            client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10, health_check_interval=30)
            _script = client.register_script(_HIT)
    return _script


def rate_limit_hit(
    *,
    key: str,
    limit: int,
    window: float = 60.0,
    slots: int = 60,
    now: float | None = None,
    read: Sequence[str] = (),
) -> RateLimit:
    """Count one hit on ``key`` unless ``limit`` hits already fell in the last ``window`` seconds.

    ``now`` (seconds, ``time.time()`` by default) is there for tests and callers with their own clock.
    ``read``: Redis keys whose values the same call reads (``RateLimit.read``; None where the cache is not
    Redis and nothing was read).
    """
    now = time.time() if now is None else now
    width = window / slots
    current = math.floor(now / width)
    script = _redis_script()
    if script is not None:
        prefix = cache.make_key(slot_key(key, 0))[:-1]  # the cache's name of a slot, less its number
        allowed, total, past_counts, values = script(
            keys=list(read), args=[prefix, current, slots, limit, math.ceil(window + 2 * width)]
        )
        values = tuple(values)  # a missing key's value: None (MGET's false in the script)
        if allowed:
            return RateLimit(True, int(total), limit, 0.0, values)
        if limit <= 0:
            return RateLimit(False, int(total), limit, window, values)
        counts = [int(c) for c in past_counts]
        wait = retry_after(counts, int(total) + 1 - limit, current, slots, width, now)
        return RateLimit(False, int(total), limit, wait, values)
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
