"""The shared sliding-window limiter (core.ratelimit) in the configured cache (Redis when REDIS_URL is set,
locmem otherwise), with its clock injected: no sleeping."""

import threading
import uuid

import pytest
from django.conf import settings

from core import ratelimit
from core.ratelimit import rate_limit_hit


def _key() -> str:
    return f"test:{uuid.uuid4().hex}"


def _most_in_any_window(times: list[float], window: float = 60.0) -> int:
    """The largest number of ``times`` (sorted) inside one half-open span ``[a, a + window)``."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_a_burst_of_21_refuses_the_21st_and_says_when_to_retry():
    key = _key()
    hits = [rate_limit_hit(key=key, limit=20, now=1000.5) for _ in range(21)]
    assert [h.allowed for h in hits] == [True] * 20 + [False]
    assert hits[19].count == 20 and hits[20].retry_after == pytest.approx(60.5)
    # the refused hit was not counted: the 20 leave the window together, and 20 more pass then
    assert not rate_limit_hit(key=key, limit=20, now=1060.9).allowed
    assert all(rate_limit_hit(key=key, limit=20, now=1061.0).allowed for _ in range(20))


def test_a_burst_straddling_a_minute_boundary_passes_no_more_than_the_limit():
    # The old fixed window let 20 through at 0:59.9 and 20 more at 1:00.1.
    key = _key()
    before = [rate_limit_hit(key=key, limit=20, now=119.9).allowed for _ in range(20)]
    after = [rate_limit_hit(key=key, limit=20, now=120.1).allowed for _ in range(20)]
    assert all(before) and not any(after)


def test_no_60_s_span_ever_holds_more_than_the_limit():
    # A client retrying every 0.25 s for five minutes, starting just before a boundary.
    key = _key()
    admitted = []
    for step in range(5 * 60 * 4):
        now = 59.0 + step * 0.25
        if rate_limit_hit(key=key, limit=20, now=now).allowed:
            admitted.append(now)
    assert _most_in_any_window(admitted) == 20
    assert len(admitted) >= 4 * 20  # the window slides on: each minute gets its allowance again


def test_spread_hits_leave_the_window_one_by_one():
    key = _key()
    for second in range(20):  # one hit a second from t=200
        assert rate_limit_hit(key=key, limit=20, now=200.0 + second).allowed
    refused = rate_limit_hit(key=key, limit=20, now=230.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(31.0)  # the t=200 hit leaves at 261
    assert not rate_limit_hit(key=key, limit=20, now=260.5).allowed
    assert rate_limit_hit(key=key, limit=20, now=261.0).allowed
    assert not rate_limit_hit(key=key, limit=20, now=261.5).allowed


def test_concurrent_hits_pass_exactly_the_limit():
    key = _key()
    start = threading.Barrier(40)
    results = []

    def hit():
        start.wait()
        results.append(rate_limit_hit(key=key, limit=20, now=5000.0).allowed)

    threads = [threading.Thread(target=hit) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 20 and results.count(False) == 20


def test_keys_are_counted_apart_and_a_zero_limit_refuses():
    one, two = _key(), _key()
    assert all(rate_limit_hit(key=one, limit=3, now=10.0).allowed for _ in range(3))
    assert not rate_limit_hit(key=one, limit=3, now=10.0).allowed
    assert rate_limit_hit(key=two, limit=3, now=10.0).allowed
    assert not rate_limit_hit(key=_key(), limit=0, now=10.0).allowed


@pytest.mark.skipif(not settings.REDIS_URL, reason="the script runs on the cache's Redis (REDIS_URL)")
def test_the_redis_script_and_the_cache_calls_count_the_same_hits(monkeypatch):
    """With the cache in Redis a hit is one script (``_HIT``); the cache's own calls (the path without Redis,
    and the counters ``core.billing.deferred``'s admission shares) see the same counts, and refuse alike."""
    assert ratelimit._redis_script() is not None
    key = _key()
    scripted = [rate_limit_hit(key=key, limit=20, now=1000.5) for _ in range(12)]
    assert [h.count for h in scripted] == list(range(1, 13)) and all(h.allowed for h in scripted)
    monkeypatch.setattr(ratelimit, "_redis_script", lambda: None)  # the cache's calls from here
    cached = [rate_limit_hit(key=key, limit=20, now=1010.5) for _ in range(9)]
    assert [h.count for h in cached[:8]] == list(range(13, 21)) and not cached[8].allowed
    assert cached[8].retry_after == pytest.approx(50.5)  # the slot of 1000.5 leaves the window at 1061
    monkeypatch.undo()
    refused = rate_limit_hit(key=key, limit=20, now=1020.0)
    assert (refused.allowed, refused.count, refused.retry_after) == (False, 20, pytest.approx(41.0))
    assert rate_limit_hit(key=key, limit=20, now=1061.0).allowed  # the first 12 have left the window
    assert not rate_limit_hit(key=key, limit=0, now=1061.0).allowed
