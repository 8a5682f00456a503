"""A visitor's messages are stored and shown the moment they arrive, whatever the bot is doing.

The bot is made slow the way it was in production: its model loads on the first message. Model loads in
this process wait on a gate the test opens (a fresh, real model cache, and the classifier kind's loader
is the real ``load_predictor`` behind a ``threading.Event``), so "while the answer is slow" is a state, not a
timing. Through the real ASGI application's websockets, on the in-memory and on the Redis channel layer.
"""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from core.asgi import application
from core.ml.cache import ModelCache
from core.ml.serving import load_predictor
from core.registry.services import classifier, serving
from core.tenancy.models import Role
from customer_service import consumers, services
from customer_service.models import AnswerSource, Conversation, ConversationStatus, Message, Sender
from tests.customer_service.conftest import banking_rows, member_headers
from tests.customer_service.test_sockets import SITE, _receive_until
from tests.sockets import Socket, run_sockets

INTENTS = ("change_pin", "card_arrival", "exchange_rate", "atm_support", "terminate_account")
MEMORY = {"default": {"BACKEND": "core.channel_layer.InMemoryChannelLayer"}}
REDIS = "core.channel_layer.RedisChannelLayer"


class ModelLoadGate:
    """Model loads in this process block until ``open()``; ``loading`` is set once one has begun."""

    def __init__(self, monkeypatch) -> None:
        self.monkeypatch = monkeypatch
        self.close()

    def close(self) -> None:
        """A fresh, empty cache (as in a new process): the next answer loads the model, at the gate."""
        self.gate, self.loading = threading.Event(), threading.Event()
        gate, loading = self.gate, self.loading

        def load(**kwargs):
            loading.set()
            assert gate.wait(timeout=120), "the test never opened the gate"
            return load_predictor(**kwargs)

        self.monkeypatch.setattr(serving, "_cache", ModelCache(max_size=4))
        self.monkeypatch.setattr(classifier, "load_predictor", load)

    def open(self) -> None:
        self.gate.set()


@pytest.fixture
def model_load_gate(monkeypatch):
    gate = ModelLoadGate(monkeypatch)
    yield gate
    gate.open()


@pytest.fixture(params=["memory", "redis"])
def channel_layer(request, settings):
    """The in-memory layer, and the production configuration of the Redis one (with REDIS_URL set)."""
    if request.param == "redis":
        if settings.CHANNEL_LAYERS["default"]["BACKEND"] != REDIS:
            pytest.skip("needs Redis (REDIS_URL)")
    else:
        settings.CHANNEL_LAYERS = MEMORY  # channels resets its layers on the change
    return request.param


def _texts() -> dict[str, str]:
    rows = banking_rows("train_slice.csv")
    return {intent: next(t for t, label in rows if label == intent) for intent in INTENTS}


async def _answers_settled() -> None:
    """Wait for every answering task of this process (no timing: they end once their answers are stored)."""
    while consumers.ANSWERING:
        await asyncio.wait(set(consumers.ANSWERING), timeout=120)


def _visitor_then_answer(conversation_id: int) -> list[tuple[str, str, str]]:
    messages = Message.all_tenants.filter(conversation_id=conversation_id).order_by("created_at", "pk")
    return [(m.sender, m.text, m.intent) for m in messages if m.source != AnswerSource.GREETING]


def _answering_bot_and_operator(organisation, make_member):
    """The bot on the test site answering every intent from a template (``answer: <intent>``) whatever its
    confidence; returns an operator of the organisation."""
    services.bot_settings_update(
        organisation=organisation, allowed_origins=[SITE.decode()], intent_threshold=0.0
    )
    for intent in {label for _text, label in banking_rows("train_slice.csv")}:  # a template for each
        services.template_save(organisation=organisation, intent=intent, body=f"answer: {intent}")
    return make_member(organisation, Role.OPERATOR)


async def _inbox_and_started_chat(operator, bot_key: str):
    """The operator's inbox socket and a visitor's widget socket with a conversation started (its
    ``conversation`` frame returned) and the greeting read."""
    inbox = Socket(application, "/ws/inbox/", headers=await sync_to_async(member_headers)(operator))
    assert (await inbox.connect())[0]
    widget = Socket(application, f"/ws/chat/{bot_key}/", headers=[(b"origin", SITE)])
    assert (await widget.connect())[0]
    await widget.send_json_to({"type": "start"})
    started = await _receive_until(widget, "conversation")
    await _receive_until(widget, "message")  # the greeting
    return inbox, widget, started


@pytest.mark.django_db(transaction=True)
def test_messages_typed_while_the_bot_is_slow_are_stored_shown_and_answered_in_order(
    bot_org, make_member, model_load_gate, channel_layer
):
    organisation, _owner, _version_id = bot_org
    operator = _answering_bot_and_operator(organisation, make_member)
    texts = _texts()
    model_load_gate.close()

    async def scenario():
        inbox, widget, started = await _inbox_and_started_chat(operator, bot_key)
        conversation = await sync_to_async(Conversation.all_tenants.get)(public_id=started["data"]["id"])

        # 1. the first message's answer waits for the model to load; two more typed meanwhile
        first, second, third = texts["change_pin"], texts["card_arrival"], texts["exchange_rate"]
        await widget.send_json_to({"type": "message", "text": first})
        echo = await _receive_until(widget, "message")
        assert echo["data"]["text"] == first and echo["data"]["id"]
        assert await sync_to_async(model_load_gate.loading.wait)(timeout=60)  # the answer is under way
        for text in (second, third):
            await widget.send_json_to({"type": "message", "text": text})
            echo = await _receive_until(widget, "message", timeout=10)  # no wait for the slow answer
            assert echo["data"] == {**echo["data"], "sender": "visitor", "text": text}
        stored = await sync_to_async(_visitor_then_answer)(conversation.pk)
        assert [(sender, text) for sender, text, _ in stored] == [
            (Sender.VISITOR, t) for t in (first, second, third)
        ]
        in_inbox = []
        while len(in_inbox) < 3:
            in_inbox.append((await _receive_until(inbox, "cs.message"))["data"]["text"])
        assert in_inbox == [first, second, third]  # the operators see them too, before any answer

        # 2. the model loads: each message is answered, in the order they came
        model_load_gate.open()
        answers = [(await _receive_until(widget, "message", timeout=60))["data"] for _ in range(3)]
        assert [a["sender"] for a in answers] == ["bot"] * 3
        await _answers_settled()
        stored = await sync_to_async(_visitor_then_answer)(conversation.pk)
        assert [sender for sender, _t, _i in stored] == [Sender.VISITOR] * 3 + [Sender.BOT] * 3
        asked = [intent for _s, _t, intent in stored[:3]]
        assert [text for _s, text, _i in stored[3:]] == [f"answer: {intent}" for intent in asked]
        assert [a["text"] for a in answers] == [f"answer: {intent}" for intent in asked]

        # 3. the visitor leaves mid-answer (another page): the answer is still worked out and stored,
        # and their next socket shows it
        model_load_gate.close()
        await widget.send_json_to({"type": "message", "text": texts["atm_support"]})
        await _receive_until(widget, "message")
        assert await sync_to_async(model_load_gate.loading.wait)(timeout=60)
        await widget.disconnect()
        model_load_gate.open()
        await _answers_settled()
        again = Socket(application, f"/ws/chat/{bot_key}/", headers=[(b"origin", SITE)])
        assert (await again.connect())[0]
        await again.send_json_to(
            {"type": "resume", "conversation": started["data"]["id"], "token": started["data"]["token"]}
        )
        await _receive_until(again, "conversation")
        history = [(await again.receive_json_from())["data"] for _ in range(9)]
        assert history[-2]["text"] == texts["atm_support"] and history[-1]["sender"] == "bot"

        # 4. an operator takes over while the bot works out an answer: the bot answers none of the
        # messages queued meanwhile
        model_load_gate.close()
        await again.send_json_to({"type": "message", "text": texts["terminate_account"]})
        await _receive_until(again, "message")
        assert await sync_to_async(model_load_gate.loading.wait)(timeout=60)
        await again.send_json_to({"type": "message", "text": texts["change_pin"]})
        await _receive_until(again, "message")
        await sync_to_async(services.conversation_take_over)(
            organisation=organisation, conversation_id=conversation.pk, user=operator
        )
        model_load_gate.open()
        await _answers_settled()
        await again.disconnect()
        await inbox.disconnect()

    bot_key = services.bot_settings_for(organisation=organisation).widget_key
    run_sockets(scenario)
    conversation = Conversation.objects.for_org(organisation).get()
    assert conversation.status == ConversationStatus.OPERATOR
    stored = _visitor_then_answer(conversation.pk)
    assert [sender for sender, _t, _i in stored[-3:]] == [Sender.VISITOR, Sender.VISITOR, Sender.SYSTEM]
    assert Message.objects.for_org(organisation).filter(sender=Sender.BOT).count() == 4 + 1  # greeting too


@pytest.mark.django_db(transaction=True)
def test_a_message_is_stored_shown_and_answered_while_the_shared_sync_thread_is_busy(
    bot_org, make_member, channel_layer
):
    """Channels hops to the process's one shared sync thread before every message a consumer handles, and
    ``database_sync_to_async`` runs there by default: one busy call held every socket of the process. The
    chat's frames, its message's store and answer, its typing, and the inbox's events and presence no longer
    wait on that thread."""
    organisation, _owner, _version_id = bot_org
    operator = _answering_bot_and_operator(organisation, make_member)
    text = _texts()["change_pin"]
    entered, release = threading.Event(), threading.Event()

    def hold_the_shared_thread() -> None:
        entered.set()
        release.wait(timeout=60)

    async def scenario():
        inbox, widget, _started = await _inbox_and_started_chat(operator, bot_key)
        holder = asyncio.ensure_future(sync_to_async(hold_the_shared_thread)())  # thread_sensitive=True
        try:
            assert await asyncio.to_thread(entered.wait, 10)
            await widget.send_json_to({"type": "message", "text": text, "client_id": "c-1"})
            ack = await _receive_until(widget, "ack", timeout=10)
            echo = await _receive_until(widget, "message", timeout=10)
            answer = await _receive_until(widget, "message", timeout=30)
            seen = (await _receive_until(inbox, "cs.message", timeout=10))["data"]["text"]
            await widget.send_json_to({"type": "typing"})  # the sockets' other calls do not wait either
            typing = await _receive_until(inbox, "cs.typing", timeout=10)
            await inbox.send_json_to({"type": "presence"})
            presence = await _receive_until(inbox, "presence", timeout=10)
            assert not holder.done()  # all of it while the shared thread was still held
        finally:
            release.set()
            await holder
        assert ack["data"]["client_id"] == "c-1" and echo["data"]["text"] == text and seen == text
        assert answer["data"]["sender"] == "bot" and answer["data"]["text"].startswith("answer: ")
        assert typing["data"]["conversation"] and presence["data"]["ttl"] > 0
        await _answers_settled()
        await widget.disconnect()
        await inbox.disconnect()

    bot_key = services.bot_settings_for(organisation=organisation).widget_key
    run_sockets(scenario)
    stored = _visitor_then_answer(Conversation.objects.for_org(organisation).get().pk)
    assert [sender for sender, _t, _i in stored] == [Sender.VISITOR, Sender.BOT]
