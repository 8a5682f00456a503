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


@pytest.mark.skipif(not settings.REDIS_URL, reason="the Redis channel layer (REDIS_URL)")
@pytest.mark.django_db(transaction=True)
def test_run_collecting_sends_a_database_threads_broadcasts_from_the_loop_in_order(monkeypatch):
    """Broadcasts of sync code run by ``run_collecting`` reach the group from the caller's loop, in order,
    without a hop back to it (``async_to_sync`` is not called), also when the code raises after its commit;
    a rolled-back transaction's broadcast is never sent."""
    from django.db import transaction

    from core import realtime

    def no_hop(*args, **kwargs):
        raise AssertionError("a broadcast hopped back to the event loop")

    monkeypatch.setattr(realtime, "async_to_sync", no_hop)
    layer = get_channel_layer()

    def writes() -> str:
        with transaction.atomic():
            broadcast(group="collect-test", event_type="test.first", payload={"n": 1})
        with transaction.atomic():
            broadcast_groups(events=[("collect-test", "test.second", {"n": 2})])
        return "done"

    def rolled_back_then_fails() -> None:
        try:
            with transaction.atomic():
                broadcast(group="collect-test", event_type="test.never", payload={})
                raise ValueError("rolled back")
        except ValueError:
            pass
        with transaction.atomic():
            broadcast(group="collect-test", event_type="test.third", payload={"n": 3})
        raise RuntimeError("failed after its commit")

    async def main() -> tuple[str, list[dict], bool]:
        channel = await layer.new_channel()
        await layer.group_add("collect-test", channel)
        result = await realtime.run_collecting(writes)
        with pytest.raises(RuntimeError):
            await realtime.run_collecting(rolled_back_then_fails, thread_sensitive=False)
        got = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(3)]
        try:
            await asyncio.wait_for(layer.receive(channel), 0.5)
            more = True
        except TimeoutError:
            more = False
        await layer.group_discard("collect-test", channel)
        return result, got, more

    result, got, more = asyncio.run(main())
    assert result == "done"
    assert [(m["event"], m["data"]) for m in got] == [
        ("test.first", {"n": 1}),
        ("test.second", {"n": 2}),
        ("test.third", {"n": 3}),
    ]
    assert not more  # the rolled-back one was not sent
    assert realtime._collecting.get() is None  # nothing left collecting in the caller's context


class _Socket:
    """A consumer in one group, keeping what is dispatched to it (core.realtime.Member)."""

    def __init__(self, channel_name: str, group: str) -> None:
        self.channel_name, self.group, self.got, self.open = channel_name, group, [], True

    def local_groups(self):
        return (self.group,) if self.open else ()

    async def dispatch(self, message):
        self.got.append(message)


@pytest.mark.parametrize("backend", ["redis", "memory"])
@pytest.mark.django_db(transaction=True)
def test_a_members_copy_is_handed_to_it_and_the_layer_sends_the_others_theirs(backend):
    """``run_collecting(member=...)``: the member's own group's messages are dispatched to it directly, not
    put in its channel; the group's other members and other groups get theirs through the layer; a member
    whose socket has closed is sent to as anybody (nothing dispatched to it)."""
    from channels.layers import channel_layers
    from django.db import transaction

    from core import realtime
    from core.channel_layer import InMemoryChannelLayer

    if backend == "redis" and not settings.REDIS_URL:
        pytest.skip("the Redis channel layer (REDIS_URL)")
    layer = get_channel_layer() if backend == "redis" else InMemoryChannelLayer()

    def writes() -> None:
        with transaction.atomic():
            broadcast_groups(events=[("own-group", "test.own", {"n": 1}), ("other-group", "test.other", {})])

    async def main():
        me, other, watcher = [await layer.new_channel() for _ in range(3)]
        for group, channel in (("own-group", me), ("own-group", other), ("other-group", watcher)):
            await layer.group_add(group, channel)
        socket = _Socket(me, "own-group")
        saved = channel_layers.backends.get("default")
        channel_layers.backends["default"] = layer
        try:
            await realtime.run_collecting(writes, member=socket)
            socket.open = False
            await realtime.run_collecting(writes, member=socket)
        finally:
            channel_layers.backends["default"] = saved
        others = [await asyncio.wait_for(layer.receive(other), 5) for _ in range(2)]
        watched = [await asyncio.wait_for(layer.receive(watcher), 5) for _ in range(2)]
        mine = await asyncio.wait_for(layer.receive(me), 5)  # the second run's: its socket had closed
        try:
            await asyncio.wait_for(layer.receive(me), 0.5)
            more = True
        except TimeoutError:
            more = False
        for group, channel in (("own-group", me), ("own-group", other), ("other-group", watcher)):
            await layer.group_discard(group, channel)
        return socket.got, others, watched, mine, more

    got, others, watched, mine, more = asyncio.run(main())
    assert [m["event"] for m in got] == ["test.own"]  # dispatched to it once, while open
    assert [m["event"] for m in others] == ["test.own", "test.own"]
    assert [m["event"] for m in watched] == ["test.other", "test.other"]
    assert mine["event"] == "test.own" and not more
