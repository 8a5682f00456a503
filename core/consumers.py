"""Base websocket consumer for members' live feeds: authenticate, pick the organisation, join its group.

A subclass names its ``topic`` (the group is ``org_group(organisation, topic)``) and the ``permission`` a
member's role needs; events broadcast with ``core.realtime.broadcast`` arrive as ``{"type", "data"}``
frames (several events to one group in one ``event.batch`` message: ``forward_batch``). Close codes: 4401 not
signed in, 4403 no organisation where the role has the permission. A frame from the client that is binary or
not a JSON object (malformed, nested too deep) gets an ``{"type": "error", "error": {"code", "message"}}``
frame, as on the chat sockets, and the socket stays open; a JSON object goes to ``receive_json`` (ignored
unless a subclass takes frames).

``DirectDispatch``: Channels (4.2 on) hops to its one shared sync thread before every message a consumer
handles (each frame, each group event, connect and disconnect) to run ``close_old_connections`` there, for
consumers that use the database through plain ``sync_to_async``. These consumers use it only through
``database_sync_to_async``, which closes old connections before and after each call itself; the hop was a
queue every socket of the process waited in (50 chat visitors: about 7% of the web process's Python time,
BENCHMARKS.md section 14). Their database calls (``on_db_thread``) run on any of the loop's threads, not on
that one either: a socket's frames are still handled one at a time, so its own calls stay in order.
"""

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from core.realtime import org_group
from core.tenancy.roles import role_can
from core.tenancy.selectors import memberships_for_user


def on_db_thread(func):
    """``database_sync_to_async(func)`` on any of the event loop's threads (``thread_sensitive=False``): the
    call waits for no other socket's call on the shared sync thread (see the module docstring)."""
    return database_sync_to_async(func, thread_sensitive=False)


async def forward_batch(consumer, message: dict) -> None:
    """An ``event.batch`` message (``core.realtime.broadcast_groups``): each of its events through the
    consumer's ``event_forward``, in order, as if each had come alone."""
    for event in message["events"]:
        await consumer.event_forward(
            {"type": "event.forward", "event": event["event"], "data": event["data"]}
        )


@on_db_thread
def _organisation_id(user, wanted, permission: str):
    """The session's organisation if the member may use the feed there, else their first such one."""
    memberships = [m for m in memberships_for_user(user=user) if role_can(m.role, permission)]
    for membership in memberships:
        if membership.organisation_id == wanted:
            return wanted
    return memberships[0].organisation_id if memberships else None


class DirectDispatch:
    """A consumer's messages to their handlers without Channels' hop to the shared sync thread (see the module
    docstring). Only for consumers whose database work goes through ``database_sync_to_async``."""

    async def dispatch(self, message: dict) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)


class OrganisationFeedConsumer(DirectDispatch, AsyncJsonWebsocketConsumer):
    topic = ""
    permission = "org.view"

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        session = self.scope.get("session") or {}
        org_id = await _organisation_id(user, session.get("org_id"), self.permission)
        if org_id is None:
            await self.close(code=4403)
            return
        self.organisation_id = org_id
        self.group = org_group(org_id, self.topic)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.joined()
        await self.accept()

    async def joined(self) -> None:
        """Called once the member may use the feed, before the socket is accepted: what a subclass records
        here (an operator's presence) holds by the time the client sees the socket open."""

    @classmethod
    async def decode_json(cls, text_data):
        try:
            return await super().decode_json(text_data)
        except RecursionError:  # json raises it for deep nesting, not a ValueError
            raise ValueError("JSON nested too deeply") from None

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:
            await self.send_error("invalid", "Binary frames are not accepted: send JSON text frames.")
            return
        try:
            content = await self.decode_json(text_data)
        except ValueError:
            content = None
        if not isinstance(content, dict):
            await self.send_error("invalid", "Frames are JSON objects.")
            return
        await self.receive_json(content, **kwargs)

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "error": {"code": code, "message": message}})

    async def disconnect(self, code):
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def event_forward(self, message):
        await self.send_json({"type": message["event"], "data": message["data"]})

    async def event_batch(self, message):
        await forward_batch(self, message)
