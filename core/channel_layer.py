"""The channel layer on Redis: channels_redis's, with a group send in one round trip where nobody listens
and two where somebody does.

channels_redis 4.3's ``group_send`` makes four round trips to Redis: it drops the group's expired members,
reads the members, drops each member channel's expired messages (a pipeline) and pushes the message (a
script sent as text with every call). Every chat message is announced to two groups (the organisation's
inbox and the conversation's), so a visitor's message and the bot's answer cost twelve round trips of the
web process's event loop. Here the first two are one script and the last two another; both scripts are
loaded once and called by their SHA. The message format, the keys and the capacity rule are channels_redis's
own (``_map_channel_keys_to_connection`` builds the messages; receivers are unchanged), so processes on either
class share one layer. ``channels-redis`` is pinned in ``pyproject.toml``: this leans on its key layout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryLayer
from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer

log = logging.getLogger(__name__)

# KEYS[1]: the group; ARGV[1]: the oldest join time still a member. Returns the members.
MEMBERS = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], 0, ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# KEYS: channel keys; ARGV: their messages, their capacities, then now, the expiry and the oldest message time
# kept. Drops each channel's expired messages, then adds the message where the channel is under capacity (the
# rule of channels_redis's group send). Returns how many channels were over capacity.
PUSH = """
local n = #KEYS
local now = ARGV[2 * n + 1]
local expiry = ARGV[2 * n + 2]
local stale = ARGV[2 * n + 3]
local over = 0
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, stale)
  if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
    redis.call('ZADD', KEYS[i], now, ARGV[i])
    redis.call('EXPIRE', KEYS[i], expiry)
  else
    over = over + 1
  end
end
return over
"""


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
        assert self.require_valid_group_name(group), "Group name not valid"  # noqa: S101 - channels_redis's
        connection = self.connection(self.consistent_hash(group))
        members = await self._script(connection, MEMBERS)(
            [self._group_key(group)], [int(time.time()) - self.group_expiry]
        )
        channel_names = [member.decode("utf8") for member in members]
        channel_names = [name for name in channel_names if name not in exclude] if exclude else channel_names
        if not channel_names:
            return
        by_connection, messages, capacities = self._map_channel_keys_to_connection(channel_names, message)
        for index, keys in by_connection.items():
            now = time.time()
            args = [messages[key] for key in keys] + [capacities[key] for key in keys]
            args += [now, self.expiry, int(now) - int(self.expiry)]
            over = await self._script(self.connection(index), PUSH)(keys, args)
            if over > 0:
                log.info("%s of %s channels over capacity in group %s", over, len(channel_names), group)


class InMemoryChannelLayer(ChannelsInMemoryLayer):
    """Channels' in-memory layer (the embedded default, one process), its ``group_send`` taking
    ``exclude`` as the Redis layer's does."""

    excludes = True

    async def group_send(self, group, message, exclude: Collection[str] = ()):
        assert isinstance(message, dict), "Message is not a dict"  # noqa: S101 - channels' own check
        self.require_valid_group_name(group)
        self._clean_expired()
        members = [name for name in self.groups.get(group, {}) if name not in exclude]
        for sent in asyncio.as_completed([asyncio.create_task(self.send(name, message)) for name in members]):
            with contextlib.suppress(ChannelFull):  # as channels' own: a full channel misses it
                await sent
