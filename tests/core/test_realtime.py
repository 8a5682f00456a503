"""Broadcasts reach the channel layer from any sync caller, including one that runs in an event loop's own
thread where Django's database is allowed (``DJANGO_ALLOW_ASYNC_UNSAFE``, as the browser tests set it: the
browser driver's event loop runs in the test's thread): there ``async_to_sync`` refuses to run, and the event
was lost with a warning."""

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from core.realtime import broadcast, broadcast_groups


@pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis channel layer (REDIS_URL) runs across loops")
@pytest.mark.django_db(transaction=True)
def test_a_broadcast_from_an_event_loops_thread_is_delivered_in_order(monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    layer = get_channel_layer()

    async def main() -> list[dict]:
        channel = await layer.new_channel()
        await layer.group_add("realtime-test", channel)
        broadcast(group="realtime-test", event_type="test.first", payload={"n": 1})  # sync, loop thread
        broadcast_groups(events=[("realtime-test", "test.second", {"n": 2})])
        got = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(2)]
        await layer.group_discard("realtime-test", channel)
        return got

    first, second = asyncio.run(main())
    assert (first["event"], first["data"]) == ("test.first", {"n": 1})
    assert (second["event"], second["data"]) == ("test.second", {"n": 2})
