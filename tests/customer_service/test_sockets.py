"""The chat widget's and the operators' inbox websockets, through the real ASGI application."""

import pytest
from asgiref.sync import sync_to_async

from core.asgi import application
from core.tenancy.models import Role
from customer_service import services
from customer_service.models import Conversation, ConversationStatus, Message
from tests.customer_service.conftest import PARKING, member_headers
from tests.sockets import Socket, run_sockets

SITE = b"https://shop.example.com"


async def _receive_until(socket, wanted_type: str, timeout: float = 10):
    while True:
        frame = await socket.receive_json_from(timeout=timeout)
        if frame["type"] == wanted_type:
            return frame


@pytest.mark.django_db(transaction=True)
def test_widget_chat_with_bot_then_operator_live(make_org, make_member):
    organisation, _owner = make_org()
    other, other_owner = make_org()
    bot = services.bot_settings_update(organisation=organisation, allowed_origins=[SITE.decode()])
    services.article_save(organisation=organisation, title="Parking", body=PARKING)
    operator = make_member(organisation, Role.OPERATOR)
    viewer = make_member(organisation, Role.VIEWER)

    async def scenario():
        inbox = Socket(application, "/ws/inbox/", headers=await sync_to_async(member_headers)(operator))
        assert (await inbox.connect())[0]
        strangers = Socket(
            application, "/ws/inbox/", headers=await sync_to_async(member_headers)(other_owner)
        )
        assert (await strangers.connect())[0]

        widget = Socket(application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", SITE)])
        assert (await widget.connect())[0]
        await widget.send_json_to({"type": "message", "text": "hi"})
        assert (await widget.receive_json_from())["error"][
            "message"
        ] == "Start or resume a conversation first."
        await widget.send_json_to({"type": "start"})
        started = await widget.receive_json_from()
        assert started["type"] == "conversation" and started["data"]["token"]
        greeting = await widget.receive_json_from()
        assert greeting["type"] == "message" and greeting["data"]["text"] == bot.greeting

        await widget.send_json_to({"type": "message", "text": "Can I park my car at the branch?"})
        mine = await widget.receive_json_from()
        answer = await _receive_until(widget, "message")  # answered apart: a status frame may come first
        assert mine["data"]["sender"] == "visitor"
        assert answer["data"]["source"] == "article" and "free customer parking" in answer["data"]["text"]
        assert "intent" not in answer["data"] and "confidence" not in answer["data"]  # internal to operators
        seen = await _receive_until(inbox, "cs.message")
        assert seen["data"]["text"] == "Can I park my car at the branch?"

        await widget.send_json_to({"type": "message", "text": "I want to speak to a person"})
        handoff = await _receive_until(widget, "message")
        handoff = (
            handoff if handoff["data"]["source"] == "handoff" else await _receive_until(widget, "message")
        )
        assert handoff["data"]["source"] == "handoff"
        waiting = await _receive_until(inbox, "cs.conversation")
        while waiting["data"]["status"] != "waiting":
            waiting = await _receive_until(inbox, "cs.conversation")
        conversation_id = waiting["data"]["id"]

        await sync_to_async(services.conversation_take_over)(
            organisation=organisation, conversation_id=conversation_id, user=operator
        )
        await sync_to_async(services.operator_message)(
            organisation=organisation, conversation_id=conversation_id, user=operator, text="Hello, Sam here."
        )
        frames = []
        while "Hello, Sam here." not in [f["data"]["text"] for f in frames]:
            frames.append(await _receive_until(widget, "message"))
        assert any("Our support team joined the conversation" in f["data"]["text"] for f in frames)
        assert operator.email not in str(frames)  # visitors never see an operator's e-mail address
        assert frames[-1]["data"]["author"] == "Our support team"

        # the visitor leaves and comes back with the token: the history is replayed once
        await widget.disconnect()
        again = Socket(application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", SITE)])
        assert (await again.connect())[0]
        await again.send_json_to(
            {"type": "resume", "conversation": started["data"]["id"], "token": started["data"]["token"]}
        )
        resumed = await again.receive_json_from()
        assert resumed["data"]["status"] == "operator" and "token" not in resumed["data"]
        history = [(await again.receive_json_from())["data"]["text"] for _ in range(7)]
        assert history[0] == bot.greeting and history[-1] == "Hello, Sam here."
        await again.send_json_to({"type": "rate", "rating": 9})
        assert "1 to 5" in (await again.receive_json_from())["error"]["message"]
        await again.send_json_to({"type": "resume", "conversation": started["data"]["id"], "token": "wrong"})
        assert (await again.receive_json_from())["error"]["code"] == "not_found"
        await again.disconnect()

        assert await strangers.receive_nothing(timeout=0.5)  # another tenant's inbox heard nothing
        await strangers.disconnect()
        await inbox.disconnect()

        # refused: a site not in allowed_origins, an unknown key, a viewer's or anonymous inbox
        evil = Socket(
            application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", b"https://evil.example.net")]
        )
        assert (await evil.connect())[0]
        assert (await evil.receive_json_from())["error"][
            "message"
        ] == "This site may not use this chat widget."
        assert await evil.receive_output() == {"type": "websocket.close", "code": 4403}
        unknown = Socket(application, "/ws/chat/wk_nope/", headers=[(b"origin", SITE)])
        assert (await unknown.connect())[0]
        assert (await unknown.receive_json_from())["error"]["code"] == "not_found"
        assert await unknown.receive_output() == {"type": "websocket.close", "code": 4404}
        watcher = Socket(application, "/ws/inbox/", headers=await sync_to_async(member_headers)(viewer))
        assert await watcher.connect() == (False, 4403)
        anonymous = Socket(application, "/ws/inbox/", headers=[(b"origin", b"http://localhost")])
        assert await anonymous.connect() == (False, 4401)

    run_sockets(scenario)
    conversation = Conversation.objects.for_org(organisation).get()
    assert conversation.status == ConversationStatus.OPERATOR
    assert Message.objects.for_org(organisation).filter(conversation=conversation).count() == 7
    assert not Conversation.objects.for_org(other).exists()


@pytest.mark.django_db(transaction=True)
def test_widget_rate_limit_and_bad_frames(make_org, settings):
    settings.CS_WIDGET_MESSAGES_PER_MINUTE = 2
    organisation, _owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)  # no allowed origins: any site

    async def scenario():
        widget = Socket(application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", SITE)])
        assert (await widget.connect())[0]
        await widget.send_to(text_data="{not json")
        assert (await widget.receive_json_from())["error"]["message"] == "Frames are JSON objects."
        await widget.send_json_to({"type": "dance"})
        assert "Unknown frame type" in (await widget.receive_json_from())["error"]["message"]
        await widget.send_json_to({"type": "start"})
        await _receive_until(widget, "message")  # greeting
        await widget.send_json_to({"type": "message", "text": "   "})
        assert (await widget.receive_json_from())["error"]["message"] == "The message is empty."
        await widget.send_json_to({"type": "message", "text": "Talk to a human"})
        await _receive_until(widget, "message")
        await widget.send_json_to({"type": "message", "text": "third", "client_id": "c_3"})
        frame = await _receive_until(widget, "error")
        assert frame["error"]["code"] == "rate_limited"
        assert frame["error"]["client_id"] == "c_3"  # the widget marks that message failed
        # a new widget key (the old one leaked, say) cuts off the sockets that use the old one
        await sync_to_async(services.widget_key_rotate)(organisation=organisation)
        await widget.send_json_to({"type": "start"})
        assert (await _receive_until(widget, "error"))["error"]["message"] == "Unknown widget key."
        assert await widget.receive_output() == {"type": "websocket.close", "code": 4404}

    run_sockets(scenario)
    texts = list(
        Message.objects.for_org(organisation).filter(sender="visitor").values_list("text", flat=True)
    )
    assert texts == ["Talk to a human"]


async def _started_widget(bot) -> Socket:
    """The widget's socket from the shop's page, with a conversation started (its greeting read)."""
    widget = Socket(application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", SITE)])
    assert (await widget.connect())[0]
    await widget.send_json_to({"type": "start"})
    await _receive_until(widget, "message")  # greeting
    return widget


@pytest.mark.django_db(transaction=True)
def test_a_message_after_the_key_was_rotated_is_refused_unstored_and_closes_the_socket(make_org):
    """The key check of a ``message`` frame runs with its write, in one trip to a database thread: a key
    rotated meanwhile refuses the message before anything is stored, and the socket closes."""
    organisation, _owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)

    async def scenario():
        widget = await _started_widget(bot)
        await sync_to_async(services.widget_key_rotate)(organisation=organisation)
        await widget.send_json_to({"type": "message", "text": "Is there parking?", "client_id": "c_1"})
        assert (await _receive_until(widget, "error"))["error"]["message"] == "Unknown widget key."
        assert await widget.receive_output() == {"type": "websocket.close", "code": 4404}

    run_sockets(scenario)
    assert not Message.objects.for_org(organisation).filter(sender="visitor").exists()


@pytest.mark.django_db(transaction=True)
def test_widget_message_with_nul_is_refused_and_the_socket_lives(make_org):
    """A NUL in a visitor message reached the INSERT and PostgreSQL's DataError closed the socket (1011)."""
    organisation, _owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)

    async def scenario():
        widget = await _started_widget(bot)
        await widget.send_json_to({"type": "message", "text": "where\x00 is my order"})
        frame = await widget.receive_json_from(timeout=10)
        assert frame["error"]["message"] == "The message may not contain NUL characters."
        await widget.send_json_to({"type": "message", "text": "Talk to a human"})
        assert (await _receive_until(widget, "message"))["data"]["text"] == "Talk to a human"
        await widget.disconnect()

    run_sockets(scenario)
    texts = list(
        Message.objects.for_org(organisation).filter(sender="visitor").values_list("text", flat=True)
    )
    assert texts == ["Talk to a human"]
