"""The chat widget's per-visitor limit agrees with the README: 20 messages in any 60 s (a setting)."""

import uuid

import pytest
from django.conf import settings

from core.errors import RateLimited
from customer_service import services


def _send(now: float, *, client: str, key: str) -> bool:
    try:
        services.widget_throttle(widget_key=key, client=client, kind="message", now=now)
    except RateLimited:
        return False
    return True


def test_twenty_messages_a_minute_and_no_more_across_a_minute_boundary():
    assert settings.CS_WIDGET_MESSAGES_PER_MINUTE == 20  # what the README promises
    client, key = "203.0.113.7", f"wk_{uuid.uuid4().hex}"  # the cache outlives a test run
    sent = [_send(1_700_000_039.0 + i * 0.1, client=client, key=key) for i in range(21)]  # 21 in a burst
    assert sent == [True] * 20 + [False]
    # over the next minute's boundary (1_700_000_040 is a multiple of 60): still nothing passes
    assert not any(_send(1_700_000_040.5 + i * 0.1, client=client, key=key) for i in range(20))
    assert _send(1_700_000_039.0, client="198.51.100.1", key=key)  # another visitor has their own allowance
    assert _send(1_700_000_100.0, client=client, key=key)  # a minute after the burst the visitor writes again


def test_the_limit_is_a_setting(settings):
    settings.CS_WIDGET_MESSAGES_PER_MINUTE = 2
    key = f"wk_{uuid.uuid4().hex}"
    assert [_send(500.0, client="192.0.2.9", key=key) for _ in range(3)] == [True, True, False]
    with pytest.raises(RateLimited, match="Please wait 60 s"):
        services.widget_throttle(widget_key=key, client="192.0.2.9", kind="message", now=501.0)
