"""The one way services push events to websockets: after commit, JSON dicts with prefixed types.

Best effort by design: the database row is the truth and pages poll it, so a lost broadcast (or an
in-memory channel layer that a worker process cannot reach) only delays what people see.

``broadcast`` sends one event to one group. ``broadcast_groups`` sends several events to several groups in
one hop to the channel layer and one channel-layer message per group: a group given several events gets them
as one ``event.batch`` message, which the consumers (``core.consumers.forward_batch``) forward as the same
frames, in the same order, as that many ``event.forward`` messages. A chat message announced to the inbox
and to the visitor's conversation was four sends and four thread hops; it is two sends and one hop.

Sync code that a websocket consumer runs on a database thread would make that hop back to the consumer's
own event loop for each broadcast, its thread blocked meanwhile: ``run_collecting`` runs it with the
broadcasts collected instead and sends them from the loop once it returns (or raises), in the same order,
with nothing between the commit and the send but the thread's return. Given the socket's consumer
(``member``), the messages for its own groups reach it directly, not through the layer (the layer sends to
the groups' other members): a chat socket's copy of its own conversation's events made no round trip to
Redis and back.
"""

import asyncio
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

T = TypeVar("T")

log = logging.getLogger(__name__)


def org_group(organisation_id: int, topic: str) -> str:
    return f"org-{organisation_id}-{topic}"


def broadcast(*, group: str, event_type: str, payload: dict[str, Any]) -> None:
    """After commit, one event to one group (``broadcast_groups`` with one event)."""
    broadcast_groups(events=[(group, event_type, payload)])


Event = tuple[str, str, dict[str, Any]]  # (group, event type, payload)


def _group_messages(events: Sequence[Event]) -> list[tuple[str, dict[str, Any]]]:
    """One channel-layer message per group (in order of first appearance), each group's events in order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for group, event_type, payload in events:
        grouped.setdefault(group, []).append({"event": event_type, "data": payload})
    return [
        (
            group,
            {"type": "event.forward", **items[0]}
            if len(items) == 1
            else {"type": "event.batch", "events": items},
        )
        for group, items in grouped.items()
    ]


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


Message = tuple[str, dict[str, Any]]  # (group, channel-layer message)

# Where broadcasts go instead of the channel layer while ``run_collecting`` runs sync code (None: sent).
_collecting: ContextVar[list[Message] | None] = ContextVar("trellis_broadcasts_collected", default=None)


class Member(Protocol):
    """A socket's consumer in some groups, taking its own copy of their messages (``run_collecting``)."""

    channel_name: str

    def local_groups(self) -> Collection[str]:
        """The groups it is in now (nothing once its socket has closed)."""
        ...

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Handle a channel-layer message, as the layer's delivery would."""
        ...


async def _send_all(layer, messages: Sequence[Message], member: Member | None = None) -> None:
    """``messages`` to their groups, ``member``'s own copies handed to it; on a layer with
    ``group_send_many`` (``core.channel_layer``'s) all of them in one call."""
    own: tuple[str, ...] = ()
    local: set[str] = set()
    if member is not None and getattr(layer, "excludes", False):
        own, local = (member.channel_name,), set(member.local_groups())
    sends = [(group, message, own if group in local else ()) for group, message in messages]
    many = getattr(layer, "group_send_many", None)
    if many is not None:
        try:
            await many(sends)
        except Exception:  # noqa: BLE001 - a broadcast must never break the write that caused it
            log.warning("broadcast to %s failed", [group for group, _ in messages], exc_info=True)
    for group, message, exclude in sends:
        if many is None:
            try:
                await layer.group_send(group, message, **({"exclude": exclude} if exclude else {}))
            except Exception:  # noqa: BLE001 - as above
                log.warning("broadcast to %s failed", group, exc_info=True)
        if exclude and member is not None:
            try:
                await member.dispatch(message)
            except Exception:  # noqa: BLE001 - as above (a socket closing meanwhile)
                log.info("delivering %s's message to its own socket failed", group, exc_info=True)


async def run_collecting(
    func: Callable[[], T], *, thread_sensitive: bool = False, member: Member | None = None
) -> T:
    """``await database_sync_to_async(func, thread_sensitive=...)()``, the broadcasts ``func`` makes sent
    from this event loop after it returns or raises, ``member``'s copy handed to it here (see the module
    docstring). On any of the loop's threads unless ``thread_sensitive``: not on the one sync thread every
    socket's thread-sensitive calls share (``core.consumers.on_db_thread`` says why)."""
    collected: list[Message] = []

    def call() -> T:
        token = _collecting.set(collected)
        try:
            return func()
        finally:
            _collecting.reset(token)

    try:
        return await database_sync_to_async(call, thread_sensitive=thread_sensitive)()
    finally:
        layer = get_channel_layer()
        if layer is not None and collected:
            await _send_all(layer, collected, member)


def broadcast_groups(*, events: Sequence[Event]) -> None:
    """After commit, each ``(group, event_type, payload)`` of ``events`` to its group, in one hop (see the
    module docstring); the same frames reach each socket as from one ``broadcast`` per event."""
    messages = _group_messages(events)

    async def send_all(layer) -> None:
        await _send_all(layer, messages)

    def send() -> None:
        collected = _collecting.get()
        if collected is not None:  # run_collecting's caller sends them from its loop
            collected.extend(messages)
            return
        layer = get_channel_layer()
        if layer is None or not messages:
            return
        try:
            if _loop_running():  # sync code in an event loop's own thread: send from a thread of its own
                sender = threading.Thread(target=async_to_sync(send_all), args=(layer,), name="broadcast")
                sender.start()
                sender.join()  # in order with the caller's next broadcast
            else:
                async_to_sync(send_all)(layer)
        except Exception:  # noqa: BLE001 - as above: no event loop to run on, a layer that cannot start
            log.warning("broadcast to %s failed", [group for group, _ in messages], exc_info=True)

    transaction.on_commit(send)
