"""The channel layer on Redis: channels_redis's, with group sends in one round trip where nobody listens
and two where somebody does, however many groups they go to.

channels_redis 4.3's ``group_send`` makes four round trips to Redis: it drops the group's expired members,
reads the members, drops each member channel's expired messages (a pipeline) and pushes the message (a
script sent as text with every call). Every chat message is announced to two groups (the organisation's
inbox and the conversation's), so a visitor's message and the bot's answer cost sixteen round trips of the
web process's event loop. Here the first two are one script and the last two another, each taking every
group (and every channel) of a ``group_send_many`` at once; both scripts are loaded once and called by their
SHA. The message format, the keys and the capacity rule are channels_redis's own
(``_map_channel_keys_to_connection`` builds the messages; receivers are unchanged), so processes on either
class share one layer. ``channels-redis`` is pinned in ``pyproject.toml``: this leans on its key layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Collection, Sequence

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryLayer
from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer

log = logging.getLogger(__name__)

# KEYS: groups; ARGV[1]: the oldest join time still a member. Drops each group's expired members; returns
# each group's members.
MEMBERS = """
local out = {}
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
  out[i] = redis.call('ZRANGE', KEYS[i], 0, -1)
end
return out
"""

# KEYS: channel keys (one may come more than once: several messages for it); ARGV: their messages, their
# capacities and their scores (the time, made to increase along a key's messages in the call: a channel's
# messages are popped lowest score first), then the expiry and the oldest message time kept. Drops each
# channel's expired messages, then adds the message where the channel is under capacity (the rule of
# channels_redis's group send). Returns how many messages found their channel over capacity.
PUSH = """
local n = #KEYS
local expiry = ARGV[3 * n + 1]
local stale = ARGV[3 * n + 2]
local over = 0
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, stale)
  if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
    redis.call('ZADD', KEYS[i], ARGV[2 * n + i], ARGV[i])
    redis.call('EXPIRE', KEYS[i], expiry)
  else
    over = over + 1
  end
end
return over
"""

# the scores of one key's messages in a call step by this much (a double holds the time to about 2.4e-7 s)
STEP_S = 1e-5

Send = tuple[str, dict, Collection[str]]  # a group, its message, the channels that do not get it


class RedisChannelLayer(ChannelsRedisLayer):
    excludes = True  # group_send takes ``exclude`` (core.realtime hands a socket its own copy itself)
    _scripts: dict[str, object] = {}

    def _script(self, connection, text: str):
        """The script, called by its SHA on ``connection`` (loaded there first where Redis lacks it)."""
        script = self._scripts.get(text)
        if script is None:
            script = self._scripts[text] = connection.register_script(text)
        return lambda keys, args: script(keys=keys, args=args, client=connection)

    async def group_send(self, group, message, exclude: Collection[str] = ()):
        """Send ``message`` to every member of ``group`` (as channels_redis does, in fewer round trips) but
        the channels in ``exclude``."""
        await self.group_send_many([(group, message, exclude)])

    async def group_send_many(self, sends: Sequence[Send]) -> None:
        """Each ``(group, message, exclude)`` of ``sends`` as ``group_send`` sends it, all of them in one
        round trip per Redis host for the members and one for the messages (none where nobody listens): a
        channel in several of the groups gets their messages in the order of ``sends``."""
        for group, _message, _exclude in sends:
            assert self.require_valid_group_name(group), "Group name not valid"  # noqa: S101 - channels_redis's
        by_host: dict[int, list[int]] = defaultdict(list)
        for i, (group, _message, _exclude) in enumerate(sends):
            by_host[self.consistent_hash(group)].append(i)
        members: dict[int, list[str]] = {}
        oldest = int(time.time()) - self.group_expiry
        for index, positions in by_host.items():
            keys = [self._group_key(sends[i][0]) for i in positions]
            found = await self._script(self.connection(index), MEMBERS)(keys, [oldest])
            for i, names in zip(positions, found, strict=True):
                members[i] = [name.decode("utf8") for name in names]
        pushes: dict[int, list[tuple[str, bytes, int]]] = defaultdict(list)  # per host: key, message, room
        for i, (_group, message, exclude) in enumerate(sends):
            names = [name for name in members[i] if name not in exclude] if exclude else members[i]
            if not names:
                continue
            by_connection, messages, capacities = self._map_channel_keys_to_connection(names, message)
            for index, keys in by_connection.items():
                pushes[index] += [(key, messages[key], capacities[key]) for key in keys]
        for index, items in pushes.items():
            now = time.time()
            args = [m for _k, m, _c in items] + [c for _k, _m, c in items]
            seen: dict[str, int] = defaultdict(int)  # per channel key: its messages so far in this call
            for key, _m, _c in items:
                args.append(now + seen[key] * STEP_S)
                seen[key] += 1
            args += [self.expiry, int(now) - int(self.expiry)]
            over = await self._script(self.connection(index), PUSH)([k for k, _m, _c in items], args)
            if over > 0:
                groups = sorted({group for group, _m, _e in sends})
                log.info("%s of %s messages found their channel over capacity (%s)", over, len(items), groups)


class InMemoryChannelLayer(ChannelsInMemoryLayer):
    """Channels' in-memory layer (the embedded default, one process), its ``group_send`` taking
    ``exclude`` as the Redis layer's does."""

    excludes = True

    async def group_send_many(self, sends: Sequence[Send]) -> None:
        """Each ``(group, message, exclude)`` of ``sends``, in order (the Redis layer's interface)."""
        for group, message, exclude in sends:
            await self.group_send(group, message, exclude)

    async def group_send(self, group, message, exclude: Collection[str] = ()):
        assert isinstance(message, dict), "Message is not a dict"  # noqa: S101 - channels' own check
        self.require_valid_group_name(group)
        self._clean_expired()
        members = [name for name in self.groups.get(group, {}) if name not in exclude]
        for sent in asyncio.as_completed([asyncio.create_task(self.send(name, message)) for name in members]):
            with contextlib.suppress(ChannelFull):  # as channels' own: a full channel misses it
                await sent
