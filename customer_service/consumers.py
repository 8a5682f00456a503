"""Websockets of the support chatbot: the visitor's chat widget and the operators' live inbox.

Thin: authenticate, call a service, forward events. The widget socket is public (a tenant's web page on
any site opens it with the organisation's widget key; the bot's ``allowed_origins`` decide which sites
may); the inbox socket is for signed-in members whose role may operate the inbox, and an open one counts its
operator online (``services.availability``: renewed by the page's ``presence`` frames, expiring on its own
when a browser dies without closing it).

Accepting a visitor's message is separate from answering it. Channels hands a consumer one frame at a
time, so a frame handler that awaited the bot's answer (seconds; a minute while a model loads) held back
every later frame of the socket: messages typed meanwhile were neither stored nor shown. A ``message``
frame is stored, echoed and broadcast to the inbox at once; answering runs as one background task per
socket that answers the queued messages one by one, in the order they came. The task outlives a
disconnect (the visitor moving to another page): the answers are stored and reach the visitor's next
socket through the conversation's group; it only stops sending on the closed one.

A visitor's ``message`` frame may carry the widget's ``client_id``: the ``ack`` frame names it once the
message is stored (the widget shows it delivered), and a frame sent again with the same id is acknowledged
without being stored or answered twice. While the bot works out an answer the widget gets ``typing``
frames, only for an answer that takes longer than ``CS_BOT_TYPING_AFTER_S`` (a quicker answer arrives before a
person could read the line); visitor and operator typing travel through the inbox and the conversation's
group, throttled here.
Hostile frames (binary, not JSON, not an object, over ``MAX_FRAME_BYTES``, an unknown type) get an error
frame and change nothing; the socket stays open.
"""

import asyncio
import logging
import time
from collections import deque

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from core.consumers import DirectDispatch, OrganisationFeedConsumer, forward_batch, on_db_thread
from core.errors import RateLimited, TrellisError
from core.proxies import client_address
from core.realtime import run_collecting
from customer_service import selectors, services

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 16 * 1024
TYPING_EVERY_S = 2.0  # at most one typing signal relayed per socket (and conversation) in this time

# Answering tasks of all sockets in this process: a strong reference (asyncio keeps only weak ones), so a
# task whose socket has gone still finishes; also what a shutdown or a test waits on.
ANSWERING: set[asyncio.Task] = set()

VISITOR_FIELDS = (
    "id",
    "conversation",
    "sender",
    "author",
    "text",
    "source",
    "article",
    "article_link",
    "suggestions",
    "client_id",
    "created_at",
)


def visitor_view(payload: dict) -> dict:
    """What a visitor may see of a message: not the bot's intent guesses or confidences."""
    return {key: payload[key] for key in VISITOR_FIELDS}


async def decode_frame(consumer, text_data, bytes_data) -> dict | None:
    """The frame as a JSON object, or None after telling the client what is wrong with it."""
    if text_data is None:
        await consumer.send_error("invalid", "Binary frames are not accepted: send JSON text frames.")
        return None
    if len(text_data) > MAX_FRAME_BYTES or len(text_data.encode("utf-8", "replace")) > MAX_FRAME_BYTES:
        await consumer.send_error("too_large", f"Frames are at most {MAX_FRAME_BYTES // 1024} KB.")
        return None
    try:
        content = await consumer.decode_json(text_data)
    except (ValueError, RecursionError):  # not JSON, or nested past the decoder's recursion limit
        content = None
    if not isinstance(content, dict):
        await consumer.send_error("invalid", "Frames are JSON objects.")
        return None
    return content


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class TypingLine:
    """The bot's "is typing" line for one answer on one socket, shown once the answer has taken ``after``
    seconds; ``end()`` when the answer is worked out: a line never shown is not shown after, and a shown
    one ends (its frame always completes: it is not cancelled once its send has begun)."""

    def __init__(self, consumer: "ChatConsumer", conversation, after: float):
        self.consumer, self.conversation, self.shown = consumer, conversation, False
        self.task = asyncio.get_running_loop().create_task(self._show(after))

    async def _show(self, after: float) -> None:
        await asyncio.sleep(after)
        self.shown = True
        await self.consumer._bot_typing(self.conversation, True)

    async def end(self) -> None:
        if not self.shown:
            self.task.cancel()
        try:
            await self.task
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # the caller itself is being cancelled
                raise
        if self.shown:
            await self.consumer._bot_typing(self.conversation, False)


class _Held:
    """A chat socket as a broadcast's member (``core.realtime.run_collecting``) whose own copies wait for
    ``release()``: the frames it sends first (a message's ack) keep their place."""

    def __init__(self, consumer: "ChatConsumer") -> None:
        self.consumer, self.messages = consumer, []
        self.channel_name = consumer.channel_name

    def local_groups(self) -> tuple[str, ...]:
        return self.consumer.local_groups()

    async def dispatch(self, message: dict) -> None:
        self.messages.append(message)

    async def release(self) -> None:
        for message in self.messages:
            await self.consumer.dispatch(message)


class ChatConsumer(DirectDispatch, AsyncJsonWebsocketConsumer):
    """``/ws/chat/<widget_key>/``. Frames in: start (with the visitor's ``page`` and widget ``visitor`` id),
    resume (with ``page``), message (``text``, ``client_id``), choose (a suggestion, by position, or "none"),
    rate, close, typing, transcript (``email``). Out: conversation, message, ack, typing, status, transcript,
    error. Operators' internal notes never come here: they are not messages and are broadcast to the inbox
    only."""

    async def connect(self):
        self.bot, self.conversation, self.group = None, None, None
        self.typed_at = 0.0
        self.sent: set[int] = set()
        self.unanswered: deque = deque()  # (conversation, message) stored, for the bot to answer in order
        self.answering: asyncio.Task | None = None
        self.gone = False
        self.widget_key = self.scope["url_route"]["kwargs"]["widget_key"]
        self.client = client_address(self.scope)  # behind a trusted proxy, the visitor's (core.proxies)
        await self.accept()
        await self._check_bot()

    def _bot_now(self):
        """The bot for the key and origin, now (sync: on a database thread); raises ``TrellisError``."""
        return services.bot_for_widget(
            widget_key=self.widget_key,
            origin=_header(self.scope, b"origin"),
            host=_header(self.scope, b"host"),
            known=self.bot,  # after the first frame: the settings from the per-process cache
        )

    def _admitted(self, kind: str) -> TrellisError | None:
        """Sync (on a database thread): the key still valid and this visitor within the minute's allowance.
        A refused key is returned (the socket closes: ``_refused``); an exhausted allowance raises."""
        try:
            self.bot = services.widget_admit(
                widget_key=self.widget_key,
                origin=_header(self.scope, b"origin"),
                host=_header(self.scope, b"host"),
                known=self.bot,
                client=self.client,
                kind=kind,
            )
        except RateLimited:
            raise
        except TrellisError as exc:
            return exc
        return None

    async def _refused(self, exc: TrellisError) -> None:
        """Accepted first, then explained and closed: browsers see a refused handshake only as code 1006."""
        self.bot = None
        await self._error(exc.code, exc.message)
        await self.close(code=4404 if exc.status == 404 else 4403)

    async def _check_bot(self) -> bool:
        """(Re)load the bot for the key and origin; a rotated key or a refused site closes the socket."""
        try:
            self.bot = await on_db_thread(self._bot_now)()
        except TrellisError as exc:
            await self._refused(exc)
            return False
        return True

    async def _admit(self, kind: str) -> bool:
        """The key still valid (else the socket closes) and this visitor within the minute's allowance."""
        refused = await on_db_thread(self._admitted)(kind)
        if refused is not None:
            await self._refused(refused)
            return False
        return True

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        content = await decode_frame(self, text_data, bytes_data)
        if content is not None:
            await self.receive_json(content)

    async def send_error(self, code: str, message: str) -> None:
        await self._error(code, message)

    async def disconnect(self, code):
        self.gone = True  # queued answers are still worked out and stored; only sending here stops
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if self.bot is None:  # refused at connect: the socket is closing
            return
        kind = content.get("type") if isinstance(content, dict) else None
        handler = {
            "start": self._start,
            "resume": self._resume,
            "message": self._message,
            "choose": self._choose,
            "rate": self._rate,
            "close": self._close,
            "typing": self._typing,
            "transcript": self._transcript,
        }.get(kind)
        if handler is None:
            await self._error(
                "invalid",
                "Unknown frame type: send start, resume, message, choose, rate, close, typing or transcript.",
            )
            return
        # an error about a message names its client id, so the widget marks that message failed
        client_id = content.get("client_id") if kind == "message" else None
        client_id = client_id if isinstance(client_id, str) and len(client_id) <= 64 else None
        if kind not in ("start", "resume") and self.conversation is None:
            await self._error("conflict", "Start or resume a conversation first.", client_id)
            return
        try:
            await handler(content)
        except TrellisError as exc:
            await self._error(exc.code, exc.message, client_id, exc.details.get("retry_after"))

    async def _join(self, conversation, token: str | None = None) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        self.conversation = conversation
        self.group = services.conversation_group(conversation)
        await self.channel_layer.group_add(self.group, self.channel_name)
        data = {
            "id": str(conversation.public_id),
            "status": conversation.status,
            "email_requested": services.email_wanted(conversation),
            "bot_name": self.bot.bot_name,
        }
        if token:
            data["token"] = token
        await self.send_json({"type": "conversation", "data": data})
        history = await on_db_thread(
            lambda: [services.message_payload(m) for m in selectors.message_list(conversation=conversation)]
        )()
        for payload in history:
            await self._send_message(payload)

    async def _start(self, content):
        if not await self._admit("start"):
            return
        conversation, token, _greeting = await on_db_thread(services.conversation_start)(
            bot=self.bot,
            origin=_header(self.scope, b"origin") or "",
            page=content.get("page"),
            visitor=content.get("visitor"),
        )
        await self._join(conversation, token)

    async def _resume(self, content):
        conversation = await on_db_thread(services.conversation_resume)(
            bot=self.bot,
            public_id=str(content.get("conversation", "")),
            token=str(content.get("token", "")),
            page=content.get("page"),
        )
        await self._join(conversation)

    async def _message(self, content):
        def admit_and_store():  # one trip to a database thread for the checks, the write and the payload
            refused = self._admitted("message")
            if refused is not None:
                return refused, None, False, None
            message, bot_has_it = services.visitor_message_store(
                conversation=self.conversation, text=content.get("text"), client_id=content.get("client_id")
            )
            return None, message, bot_has_it, services.message_payload(message)

        # its broadcasts (to the inbox and the conversation) sent from here after: no hop back to this loop;
        # this socket's own copy held until its ack has gone; on any database thread, not the one shared by
        # every socket's thread-sensitive calls (a queue at many visitors: BENCHMARKS.md section 14)
        held = _Held(self)
        refused, message, bot_has_it, payload = await run_collecting(admit_and_store, member=held)
        if refused is not None:
            await self._refused(refused)
            return
        if message.client_id:  # the widget shows the message delivered (a frame without an id gets no ack)
            await self.send_json({"type": "ack", "data": {"client_id": message.client_id, "id": message.pk}})
        await held.release()
        await self._send_message(payload)
        if bot_has_it:  # stored and shown: the answer follows, without holding back the next frames
            self.unanswered.append((self.conversation, message))
            if self.answering is None or self.answering.done():
                self.answering = asyncio.get_running_loop().create_task(self._answer_queued())
                ANSWERING.add(self.answering)
                self.answering.add_done_callback(ANSWERING.discard)

    async def _answer_queued(self) -> None:
        """Answer the stored visitor messages one at a time, oldest first (each sees the previous answer:
        a hand-off or a takeover meanwhile silences the bot for the rest)."""
        while self.unanswered:
            conversation, message = self.unanswered.popleft()
            # shown only if the answer takes a while
            typing = TypingLine(self, conversation, settings.CS_BOT_TYPING_AFTER_S)
            try:
                # Off the shared database thread: one slow answer must not stall every other socket.
                answers = await run_collecting(
                    lambda c=conversation, m=message: [
                        services.message_payload(a)
                        for a in services.visitor_message_answer(conversation=c, message=m, bot=self.bot)
                    ],
                    member=self,
                )
            except Exception:  # noqa: BLE001 - the message stays stored, for an operator; go on
                log.exception("answering visitor message %s failed", message.pk)
                await typing.end()
                continue
            except BaseException:  # cancelled (the server stopping): no typing line shown after
                typing.task.cancel()
                raise
            await typing.end()
            for payload in answers if self._showing(conversation) else []:  # else the next socket shows it
                await self._send_message(payload)

    def local_groups(self) -> tuple[str, ...]:
        """The conversation's group while this socket shows it: its own copy of the group's messages is
        handed to it directly (``core.realtime.run_collecting``)."""
        return () if self.gone or self.group is None else (self.group,)

    def _showing(self, conversation) -> bool:
        return not self.gone and self.conversation is not None and self.conversation.pk == conversation.pk

    async def _bot_typing(self, conversation, typing: bool) -> None:
        """The bot "is typing" while it works out an answer (this socket only: it is the one that asked)."""
        if self._showing(conversation):
            frame = {"who": "bot", "name": self.bot.bot_name if self.bot else "", "typing": typing}
            await self.send_json({"type": "typing", "data": frame})

    async def _typing(self, content):
        """The visitor is typing: told to the inbox, at most once per ``TYPING_EVERY_S`` (others dropped)."""
        now = time.monotonic()
        if now - self.typed_at < TYPING_EVERY_S:
            return
        self.typed_at = now
        await on_db_thread(services.visitor_typing)(conversation=self.conversation)

    async def _transcript(self, content):
        """The visitor asks for the transcript by e-mail (checked and throttled; a task sends it). It counts
        as one of the visitor's messages too: the address given receives mail, so asking is not free."""
        if not await self._admit("message"):
            return
        email = await on_db_thread(services.transcript_request)(
            conversation=self.conversation, email=content.get("email")
        )
        await self.send_json({"type": "transcript", "data": {"email": email, "status": "queued"}})

    async def _choose(self, content):
        """The visitor picked one of the bot's suggestions (or none of them): stored, then answered."""
        if not await self._admit("message"):
            return
        replies = await on_db_thread(
            lambda: [
                services.message_payload(m)
                for m in services.suggestion_choose(
                    conversation=self.conversation,
                    message_id=content.get("message"),
                    option=content.get("option"),
                )
            ]
        )()
        for payload in replies:
            await self._send_message(payload)

    async def _rate(self, content):
        await on_db_thread(services.conversation_rate)(
            conversation=self.conversation, rating=content.get("rating")
        )
        await self.send_json({"type": "rated", "data": {"rating": content.get("rating")}})

    async def _close(self, content):
        await on_db_thread(services.conversation_close)(conversation=self.conversation, by="the visitor")

    async def _send_message(self, payload: dict) -> None:
        if payload["id"] in self.sent:
            return
        self.sent.add(payload["id"])
        await self.send_json({"type": "message", "data": visitor_view(payload)})

    async def _error(
        self, code: str, message: str, client_id: str | None = None, retry_after: int | None = None
    ) -> None:
        error: dict = {"code": code, "message": message}
        if client_id:
            error["client_id"] = client_id
        if retry_after is not None:
            error["retry_after"] = retry_after
        await self.send_json({"type": "error", "error": error})

    async def event_forward(self, message):
        if message["event"] == "cs.message":
            await self._send_message(message["data"])
        elif message["event"] == "cs.status":
            await self.send_json({"type": "status", "data": message["data"]})
        elif message["event"] == "cs.typing":
            await self.send_json({"type": "typing", "data": message["data"]})

    async def event_batch(self, message):
        await forward_batch(self, message)


class InboxConsumer(OrganisationFeedConsumer):
    """``/ws/inbox/``: conversation and message events of the member's organisation, for operators. Open, it
    counts its operator online; frames in: ``presence`` (still here, every third of ``CS_PRESENCE_TTL_S``) and
    ``typing`` (``conversation``: its id; the visitor's widget shows the operator typing)."""

    topic = "inbox"
    permission = "inbox.operate"

    async def connect(self):
        self.typed_at: dict[int, float] = {}
        await super().connect()

    async def joined(self) -> None:
        await self._present()  # online once the socket is open

    async def _present(self) -> None:
        await on_db_thread(services.operator_presence_mark)(
            organisation_id=self.organisation_id, user_id=self.scope["user"].pk, channel=self.channel_name
        )

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        content = await decode_frame(self, text_data, bytes_data)
        if content is not None:
            await self.receive_json(content)

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "error": {"code": code, "message": message}})

    async def receive_json(self, content, **kwargs):
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "presence":
            await self._present()
            await self.send_json({"type": "presence", "data": {"ttl": settings.CS_PRESENCE_TTL_S}})
        elif kind == "typing":
            await self._typing(content.get("conversation"))
        else:
            await self.send_error("invalid", "Send presence or typing frames only.")

    async def _typing(self, conversation_id) -> None:
        """An operator typing a reply: relayed to the visitor at most once per ``TYPING_EVERY_S`` each."""
        key = conversation_id if isinstance(conversation_id, int) else -1
        now = time.monotonic()
        if now - self.typed_at.get(key, -TYPING_EVERY_S) < TYPING_EVERY_S:
            return
        try:
            await on_db_thread(services.operator_typing)(
                organisation=self.organisation_id, conversation_id=conversation_id, user=self.scope["user"]
            )
        except TrellisError as exc:
            await self.send_error(exc.code, exc.message)
            return
        self.typed_at[key] = now

    async def disconnect(self, code):
        if getattr(self, "organisation_id", None) is not None:
            await on_db_thread(services.operator_presence_clear)(
                organisation_id=self.organisation_id, user_id=self.scope["user"].pk, channel=self.channel_name
            )
        await super().disconnect(code)
