"""``core.channel_layer.RedisChannelLayer``: channels_redis's layer with a group send in fewer round trips
delivers what channels_redis's own delivers: to plain and process-local channels, never to a member past its
group expiry, never past a channel's capacity; and the two classes share one layer (same keys and format).
On the real Redis (``REDIS_URL``)."""

import asyncio
import time

import pytest
import redis
from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer
from django.conf import settings

from core.channel_layer import RedisChannelLayer

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="a channel layer on Redis (REDIS_URL)")


def _layers(prefix: str, **config):
    hosts = [settings.REDIS_URL]
    return (
        RedisChannelLayer(hosts=hosts, prefix=prefix, **config),
        ChannelsRedisLayer(hosts=hosts, prefix=prefix, **config),
    )


async def _received(layer, channel, timeout=2.0):
    try:
        return await asyncio.wait_for(layer.receive(channel), timeout)
    except TimeoutError:
        return None


def test_a_group_send_reaches_every_member_as_channels_redis_does():
    prefix = f"layer-test-{time.time_ns()}"

    async def scenario():
        ours, theirs = _layers(prefix)
        local = await ours.new_channel()  # process-local: "specific.<id>!<id>", routed inside the process
        plain = f"plain.{time.time_ns()}"
        await ours.group_add("group-a", local)
        await theirs.group_add("group-a", plain)
        await ours.group_send("group-a", {"type": "test.event", "n": 1})
        await theirs.group_send("group-a", {"type": "test.event", "n": 2})
        got = [await _received(ours, local), await _received(ours, local)]
        got_plain = [await _received(theirs, plain), await _received(ours, plain)]
        await ours.group_send(
            "nobody-here", {"type": "test.event", "n": 3}
        )  # an empty group: nothing, no error
        await ours.flush()
        await theirs.flush()
        return got, got_plain

    got, got_plain = asyncio.run(scenario())
    assert [m["n"] for m in got] == [1, 2] and [m["n"] for m in got_plain] == [1, 2]
    assert all(m["type"] == "test.event" for m in got + got_plain)


def test_expired_members_are_dropped_and_capacity_holds():
    prefix = f"layer-test-{time.time_ns()}"
    client = redis.Redis.from_url(settings.REDIS_URL)

    async def scenario():
        ours, _ = _layers(prefix, capacity=3)
        fresh, stale = f"fresh.{time.time_ns()}", f"stale.{time.time_ns()}"
        await ours.group_add("group-b", fresh)
        await ours.group_add("group-b", stale)
        # the stale member joined longer ago than the group expiry (a socket that died without leaving)
        client.zadd(f"{prefix}:group:group-b", {stale: time.time() - ours.group_expiry - 10})
        for n in range(5):
            await ours.group_send("group-b", {"type": "test.event", "n": n})
        fresh_got = []
        while (message := await _received(ours, fresh, timeout=0.5)) is not None:
            fresh_got.append(message["n"])
        stale_got = await _received(ours, stale, timeout=0.5)
        members = client.zrange(f"{prefix}:group:group-b", 0, -1)
        await ours.flush()
        return fresh_got, stale_got, members

    fresh_got, stale_got, members = asyncio.run(scenario())
    assert fresh_got == [0, 1, 2]  # capacity 3: the rest refused, as channels_redis refuses them
    assert stale_got is None
    assert len(members) == 1 and members[0].startswith(b"fresh.")


def test_the_project_serves_its_sockets_on_this_layer():
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "core.channel_layer.RedisChannelLayer"


def test_sends_to_several_groups_are_two_round_trips_and_each_channel_gets_them_in_order(monkeypatch):
    """``group_send_many``: one call for every group's members and one for every message (none where nobody
    listens); a channel in several of the groups gets their messages in the order of the sends, read by
    channels_redis's own class too; an excluded channel gets nothing."""
    import redis.asyncio.client

    prefix = f"layer-test-{time.time_ns()}"
    commands: list[str] = []
    original = redis.asyncio.client.Redis.execute_command

    async def counting(self, *args, **kwargs):
        commands.append(str(args[0]).upper())
        return await original(self, *args, **kwargs)

    async def scenario():
        ours, theirs = _layers(prefix)
        local = await ours.new_channel()
        plain, other = f"plain.{time.time_ns()}", f"other.{time.time_ns()}"
        for group, channel in (("g1", local), ("g1", plain), ("g2", plain), ("g2", other), ("g4", local)):
            await ours.group_add(group, channel)
        sends = [
            ("g1", {"type": "test.event", "n": 1}, ()),
            ("g2", {"type": "test.event", "n": 2}, ()),
            ("g3", {"type": "test.event", "n": 3}, ()),  # nobody in it
            ("g4", {"type": "test.event", "n": 4}, (local,)),  # its only member excluded
            ("g1", {"type": "test.event", "n": 5}, ()),
        ]
        await ours.group_send_many([("g0", {"type": "test.event", "n": 0}, ())])  # the scripts loaded
        await ours.group_add("g5", plain)
        await ours.group_send_many([("g5", {"type": "test.event", "n": 0}, ())])
        assert (await _received(theirs, plain))["n"] == 0
        monkeypatch.setattr(redis.asyncio.client.Redis, "execute_command", counting)
        await ours.group_send_many(sends)
        sent = list(commands)
        commands.clear()
        await ours.group_send_many([("g3", {"type": "test.event", "n": 6}, ())])
        empty = list(commands)
        monkeypatch.setattr(redis.asyncio.client.Redis, "execute_command", original)
        got = {}
        readers = (("local", ours, local), ("plain", theirs, plain), ("other", ours, other))
        for name, layer, channel in readers:
            got[name] = []
            while (message := await _received(layer, channel, timeout=0.5)) is not None:
                got[name].append(message["n"])
        await ours.flush()
        await theirs.flush()
        return sent, empty, got

    sent, empty, got = asyncio.run(scenario())
    assert got == {"local": [1, 5], "plain": [1, 2, 5], "other": [2]}
    assert sent == ["EVALSHA", "EVALSHA"] and empty == ["EVALSHA"]
