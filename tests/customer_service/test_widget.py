"""The chat widget a customer embeds: branding (form, avatar checks, public config and avatar), delivery
acknowledgements with the client's message id, typing, article links, e-mail transcripts and hostile frames,
through real websockets on the Redis channel layer (the ASGI application itself)."""

import email
import email.policy
import io
import json
import socketserver
import threading

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from core.asgi import application
from core.billing.models import Plan, UsageEvent, plan_limits_write
from core.tenancy.models import Role
from customer_service import services
from customer_service.models import Article, Conversation, Message
from customer_service.services import branding
from tests.customer_service.conftest import PARKING, login, member_headers
from tests.sockets import Socket, run_sockets

SITE = b"https://shop.example.com"
QUESTION = "Can I park my car at the branch?"


def _image(fmt: str, size=(300, 200), mode="RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, (200, 30, 60) if mode == "RGB" else (200, 30, 60, 128)).save(out, format=fmt)
    return out.getvalue()


def _branding(**overrides) -> dict:
    return {
        "colour": "#AA3300",
        "bot_name": "Ada",
        "position": "bottom-left",
        "welcome_text": "Hi there",
        **overrides,
    }


@pytest.mark.django_db
def test_branding_form_saves_and_refuses_fake_images(make_org, make_member):
    organisation, owner = make_org()
    client = login(owner)
    page = client.get("/customer-service/")
    assert page.status_code == 200 and b'id="branding-form"' in page.content  # the set-up page's section
    assert page.content.count(b'id="id_bot_name"') == 1 and b'id="branding_bot_name"' in page.content
    assert client.get("/customer-service/settings/branding/").status_code == 200

    fakes = {
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "markup"),
        "html": (b"<!doctype html><html><body>hi</body></html>", "markup"),
        # a real PNG with an HTML page after it: a viewer shows the picture, a sniffing browser the page
        "polyglot": (_image("PNG") + b"<html><script>alert(document.cookie)</script></html>", "markup"),
        "text": (b"just some text, not an image at all", "not a PNG, JPEG or WebP"),
        "gif": (_image("GIF"), "not a PNG, JPEG or WebP"),
        "truncated": (_image("PNG")[:60], "damaged or incomplete"),
        "huge": (_image("PNG", size=(3000, 10)), "at most 2048x2048"),
    }
    for name, (data, reason) in fakes.items():
        upload = SimpleUploadedFile(f"{name}.png", data, content_type="image/png")
        refused = client.post("/customer-service/settings/branding/", {**_branding(), "avatar": upload})
        assert refused.status_code == 400, name
        assert reason.encode() in refused.content, (name, refused.content[-2000:])
    big = SimpleUploadedFile(
        "big.png", b"\x89PNG" + b"0" * branding.AVATAR_MAX_BYTES, content_type="image/png"
    )
    refused = client.post("/customer-service/settings/branding/", {**_branding(), "avatar": big})
    assert refused.status_code == 400 and b"too large" in refused.content
    for field, value, reason in (
        ("colour", "red;}x", b"is not a colour"),
        ("position", "top-middle", b"Select a valid choice"),
    ):
        refused = client.post("/customer-service/settings/branding/", _branding(**{field: value}))
        assert refused.status_code == 400 and reason in refused.content
    bot = services.bot_settings_for(organisation=organisation)
    assert (bot.brand_colour, bot.bot_name, bot.avatar_digest) == (
        "#3056d3",
        "Assistant",
        "",
    )  # nothing saved

    for fmt in ("PNG", "JPEG", "WEBP"):
        upload = SimpleUploadedFile("me." + fmt.lower(), _image(fmt, size=(1024, 512)))
        saved = client.post("/customer-service/settings/branding/", {**_branding(), "avatar": upload})
        assert saved.status_code == 302, (fmt, saved.content[-1500:])
        bot = services.bot_settings_for(organisation=organisation)
        stored = Image.open(io.BytesIO(bytes(bot.avatar)))
        assert stored.format == "PNG" and stored.size == (128, 64)  # re-encoded, scaled down
    assert (bot.brand_colour, bot.bot_name, bot.widget_position, bot.welcome_text) == (
        "#aa3300",
        "Ada",
        "bottom-left",
        "Hi there",
    )
    viewer = make_member(organisation, Role.VIEWER)
    assert login(viewer).post("/customer-service/settings/branding/", _branding()).status_code == 403
    removed = client.post("/customer-service/settings/branding/", {**_branding(), "remove_avatar": "on"})
    assert (
        removed.status_code == 302
        and services.bot_settings_for(organisation=organisation).avatar_digest == ""
    )


@pytest.mark.django_db
def test_public_config_and_avatar_carry_only_their_tenants_branding(make_org):
    organisation, _ = make_org()
    other, _ = make_org()
    mine = branding.branding_update(
        organisation=organisation, avatar=_image("PNG", mode="RGBA"), **_branding(welcome_text="Welcome!")
    )
    theirs = branding.branding_update(
        organisation=other, **_branding(colour="#00ff00", bot_name="Zed", position="bottom-right")
    )
    services.bot_settings_update(organisation=organisation, greeting="Secret greeting", allowed_origins=[])
    client = Client()  # public: no session

    config = client.get(f"/customer-service/widget/{mine.widget_key}/config.json")
    assert config.status_code == 200 and config["Access-Control-Allow-Origin"] == "*"
    assert "max-age=" in config["Cache-Control"]
    data = config.json()
    assert set(data) == {"bot_name", "colour", "position", "welcome_text", "avatar"}
    assert (data["bot_name"], data["colour"], data["position"], data["welcome_text"]) == (
        "Ada",
        "#aa3300",
        "bottom-left",
        "Welcome!",
    )
    assert mine.widget_key in data["avatar"] and f"v={mine.avatar_digest}" in data["avatar"]
    assert "Secret greeting" not in config.content.decode() and "Zed" not in config.content.decode()
    other_config = client.get(f"/customer-service/widget/{theirs.widget_key}/config.json").json()
    assert (other_config["bot_name"], other_config["colour"], other_config["avatar"]) == (
        "Zed",
        "#00ff00",
        None,
    )

    avatar = client.get(data["avatar"])
    assert avatar.status_code == 200 and avatar["Content-Type"] == "image/png"
    assert "max-age=86400" in avatar["Cache-Control"] and avatar["X-Content-Type-Options"] == "nosniff"
    assert Image.open(io.BytesIO(avatar.content)).mode == "RGBA"  # transparency kept
    again = client.get(data["avatar"], HTTP_IF_NONE_MATCH=avatar["ETag"])
    assert again.status_code == 304
    assert client.get(f"/customer-service/widget/{theirs.widget_key}/avatar").status_code == 404  # none set
    unknown = client.get("/customer-service/widget/wk_nope/config.json")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    assert client.get("/customer-service/widget/wk_nope/avatar").status_code == 404


async def _frames_until(socket, wanted, timeout: float = 10) -> list[dict]:
    """Every frame up to and including the first for which ``wanted(frame)`` holds."""
    frames = []
    while True:
        frames.append(await socket.receive_json_from(timeout=timeout))
        if wanted(frames[-1]):
            return frames


async def _widget(bot) -> tuple[Socket, dict]:
    widget = Socket(application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", SITE)])
    assert (await widget.connect())[0]
    await widget.send_json_to({"type": "start"})
    started = await widget.receive_json_from()
    await widget.receive_json_from()  # the greeting
    return widget, started["data"]


@pytest.mark.django_db(transaction=True)
def test_message_is_acknowledged_with_its_client_id_and_stored_once(make_org, settings):
    settings.CS_BOT_TYPING_AFTER_S = 0  # the typing line for every answer, however quick
    organisation, _ = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    services.article_save(organisation=organisation, title="Parking", body=PARKING)

    async def scenario():
        widget, started = await _widget(bot)
        frame = {"type": "message", "text": QUESTION, "client_id": "c_0001"}
        await widget.send_json_to(frame)
        frames = await _frames_until(
            widget, lambda f: f["type"] == "message" and f["data"]["sender"] == "bot"
        )
        kinds = [f["type"] for f in frames]
        ack = frames[kinds.index("ack")]["data"]
        echo = next(f["data"] for f in frames if f["type"] == "message" and f["data"]["sender"] == "visitor")
        assert ack == {"client_id": "c_0001", "id": echo["id"]} and echo["client_id"] == "c_0001"
        # the bot "types" while it answers (the answer may overtake the end of typing: the widget hides it)
        if not any(f["type"] == "typing" and not f["data"]["typing"] for f in frames):
            frames += await _frames_until(widget, lambda f: f["type"] == "typing")
        kinds = [f["type"] for f in frames]
        typing = [f["data"] for f in frames if f["type"] == "typing"]
        assert typing == [
            {"who": "bot", "name": bot.bot_name, "typing": True},
            {"who": "bot", "name": bot.bot_name, "typing": False},
        ]
        assert kinds.index("ack") < kinds.index("typing") < len(kinds) - 1 - kinds[::-1].index("message")

        # the widget saw no ack (the connection dropped, say): it resumes and sends the frame again, and the
        # message is acknowledged with the same id, not stored or answered twice
        await widget.disconnect()
        widget = Socket(application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", SITE)])
        assert (await widget.connect())[0]
        await widget.send_json_to(
            {"type": "resume", "conversation": started["id"], "token": started["token"]}
        )
        replayed = await _drain(widget, 0.5)
        assert [f["type"] for f in replayed] == ["conversation", "message", "message", "message"]
        await widget.send_json_to(frame)
        assert (await widget.receive_json_from())["data"] == ack
        assert await widget.receive_nothing(timeout=1.0)  # no second answer either

        for bad, code in (("no spaces allowed", "invalid"), ("x" * 65, "invalid")):
            await widget.send_json_to({"type": "message", "text": "hello", "client_id": bad})
            error = (await widget.receive_json_from())["error"]
            assert error["code"] == code and "client_id" in error["message"]
        await widget.send_json_to({"type": "message", "text": "  ", "client_id": "c_0002"})
        error = (await widget.receive_json_from())["error"]
        assert error == {"code": "invalid", "message": "The message is empty.", "client_id": "c_0002"}
        await widget.disconnect()

    run_sockets(scenario)
    conversation = Conversation.objects.for_org(organisation).get()
    texts = list(
        Message.objects.for_org(organisation)
        .filter(conversation=conversation)
        .values_list("sender", "client_id")
    )
    assert texts == [("bot", ""), ("visitor", "c_0001"), ("bot", "")]


@pytest.mark.django_db(transaction=True)
def test_a_quick_answer_comes_without_the_typing_line(make_org, settings):
    """The typing line waits ``CS_BOT_TYPING_AFTER_S``: an answer quicker than that is the only frame after
    the visitor's own message (no "typing" on and off around it), and the next message is answered too."""
    settings.CS_BOT_TYPING_AFTER_S = 30.0
    organisation, _ = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    services.article_save(organisation=organisation, title="Parking", body=PARKING)

    async def scenario():
        widget, _ = await _widget(bot)
        for n in range(2):
            await widget.send_json_to({"type": "message", "text": QUESTION, "client_id": f"q{n}"})
            frames = await _frames_until(
                widget, lambda f: f["type"] == "message" and f["data"]["sender"] == "bot"
            )
            frames += await _drain(widget, 0.3)
            kinds = [f["type"] for f in frames if f["type"] != "status"]  # the conversation's state, as ever
            assert kinds == ["ack", "message", "message"], frames
            answer = [f["data"] for f in frames if f["type"] == "message"][-1]
            assert answer["sender"] == "bot" and "Parking" in answer["text"]
        await widget.disconnect()

    run_sockets(scenario)


@pytest.mark.django_db(transaction=True)
def test_typing_travels_between_visitor_and_operators_throttled(make_org, make_member):
    organisation, _ = make_org()
    other, other_owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    operator = make_member(organisation, Role.OPERATOR)
    operator.first_name = "Sam"
    operator.save()
    stranger_conversation, _, _ = services.conversation_start(
        bot=services.bot_settings_for(organisation=other)
    )

    async def scenario():
        inbox = Socket(application, "/ws/inbox/", headers=await sync_to_async(member_headers)(operator))
        assert (await inbox.connect())[0]
        await inbox.receive_nothing(timeout=0.3)
        strangers = Socket(
            application, "/ws/inbox/", headers=await sync_to_async(member_headers)(other_owner)
        )
        assert (await strangers.connect())[0]
        widget, _ = await _widget(bot)
        conversation = await sync_to_async(lambda: Conversation.objects.for_org(organisation).get())()

        await widget.send_json_to({"type": "typing"})
        seen = (await _frames_until(inbox, lambda f: f["type"] == "cs.typing"))[-1]
        assert seen["data"] == {"conversation": conversation.pk, "who": "visitor"}
        await widget.send_json_to({"type": "typing"})  # within 2 s: dropped
        await widget.send_json_to({"type": "typing"})
        assert not [f for f in await _drain(inbox, 0.8) if f["type"] == "cs.typing"]

        await inbox.send_json_to({"type": "typing", "conversation": conversation.pk})
        shown = await widget.receive_json_from()
        assert shown == {"type": "typing", "data": {"who": "operator", "name": "Sam", "typing": True}}
        await inbox.send_json_to({"type": "typing", "conversation": conversation.pk})  # throttled
        assert await widget.receive_nothing(timeout=0.8)
        # another tenant's conversation is not found from this inbox; its widget hears nothing
        await inbox.send_json_to({"type": "typing", "conversation": stranger_conversation.pk})
        error = (await _frames_until(inbox, lambda f: f["type"] == "error"))[-1]
        assert error["error"]["code"] == "not_found"
        await inbox.send_json_to({"type": "typing", "conversation": "1; drop table"})
        assert (await _frames_until(inbox, lambda f: f["type"] == "error"))[-1]["error"][
            "code"
        ] == "not_found"
        assert not [f for f in await _drain(strangers, 0.5) if f["type"] == "cs.typing"]
        for socket in (widget, inbox, strangers):
            await socket.disconnect()

    run_sockets(scenario)


async def _drain(socket, timeout: float) -> list[dict]:
    frames = []
    while not await socket.receive_nothing(timeout=timeout):
        frames.append(await socket.receive_json_from())
    return frames


@pytest.mark.django_db(transaction=True)
def test_answers_from_an_article_carry_its_title_and_a_safe_link(make_org):
    organisation, _ = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    article = services.article_save(
        organisation=organisation,
        title="Parking <b>& bikes</b>",
        body=PARKING,
        url="https://help.example.com/parking",
    )

    async def scenario():
        widget, _ = await _widget(bot)
        await widget.send_json_to({"type": "message", "text": QUESTION, "client_id": "a1"})
        frames = await _frames_until(
            widget, lambda f: f["type"] == "message" and f["data"]["sender"] == "bot"
        )
        first = frames[-1]["data"]
        # an address that is not http(s) (written before the form checked it, say) is never linked
        await sync_to_async(lambda: Article.objects.for_org(organisation).update(url="javascript:alert(1)"))()
        await widget.send_json_to({"type": "message", "text": QUESTION + " Really?", "client_id": "a2"})
        frames = await _frames_until(
            widget, lambda f: f["type"] == "message" and f["data"]["sender"] == "bot"
        )
        await widget.disconnect()
        return first, frames[-1]["data"]

    first, second = run_sockets(scenario)
    assert first["source"] == "article" and first["article"] == article.pk
    assert first["article_link"] == {
        "title": "Parking <b>& bikes</b>",
        "url": "https://help.example.com/parking",
    }
    assert second["article_link"] == {"title": "Parking <b>& bikes</b>", "url": ""}


@pytest.fixture
def eager_tasks():
    """Run the tasks queued after commit in this process (the mail goes to the test's locmem outbox)."""
    from core.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


@pytest.mark.django_db(transaction=True)
def test_transcript_is_mailed_escaped_throttled_and_metered(make_org, mailoutbox, eager_tasks, settings):
    settings.CS_BOT_TYPING_AFTER_S = 0  # the end of the typing line says the bot is done
    organisation, _ = make_org("Acme <Shop>")
    other, _ = make_org()
    bot = services.bot_settings_update(organisation=organisation, bot_name="Ada")
    services.article_save(organisation=organisation, title="Parking", body=PARKING)
    services.conversation_start(bot=services.bot_settings_for(organisation=other))
    plan_limits_write(Plan.objects.get(code="trial").pk, {"transcript_emails": 1})

    async def scenario():
        widget, _ = await _widget(bot)
        await widget.send_json_to({"type": "message", "text": QUESTION})
        await _frames_until(widget, lambda f: f["type"] == "message" and f["data"]["sender"] == "bot")
        await widget.send_json_to({"type": "message", "text": "<script>alert(1)</script> thanks"})
        await _frames_until(widget, lambda f: f["type"] == "typing" and not f["data"]["typing"])
        await _drain(widget, 0.5)
        for bad in ("not an address", "a@b", "", None, ["x@example.com"], "x" * 250 + "@example.com"):
            await widget.send_json_to({"type": "transcript", "email": bad})
            error = (await _frames_until(widget, lambda f: f["type"] == "error"))[-1]["error"]
            assert error["code"] == "invalid" and "valid e-mail address" in error["message"], bad
        await widget.send_json_to({"type": "transcript", "email": "visitor@example.com"})
        done = (await _frames_until(widget, lambda f: f["type"] == "transcript"))[-1]
        assert done["data"] == {"email": "visitor@example.com", "status": "queued"}
        await widget.send_json_to({"type": "transcript", "email": "visitor@example.com"})
        error = (await _frames_until(widget, lambda f: f["type"] == "error"))[-1]["error"]
        assert error["code"] == "rate_limited" and 290 <= error["retry_after"] <= 301
        await widget.disconnect()
        # the plan allows one transcript this month (set below): another conversation's request is refused
        second, _ = await _widget(bot)
        await second.send_json_to({"type": "transcript", "email": "visitor@example.com"})
        error = (await _frames_until(second, lambda f: f["type"] == "error"))[-1]["error"]
        assert error["code"] == "quota_exceeded" and "transcript" in error["message"].lower()
        await second.disconnect()

    run_sockets(scenario)
    [mail] = mailoutbox
    assert mail.to == ["visitor@example.com"] and mail.subject == "Your conversation with Acme <Shop>"
    assert "You: <script>alert(1)</script> thanks" in mail.body  # plain text: as written
    assert "Ada: " + bot.greeting in mail.body and "free customer parking" in mail.body
    [(html, mime)] = mail.alternatives
    assert mime == "text/html" and "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Acme &lt;Shop&gt;" in html
    usage = UsageEvent.objects.for_org(organisation).filter(meter="transcript_emails")
    assert [u.quantity for u in usage] == [1]
    assert not UsageEvent.objects.for_org(other).filter(meter="transcript_emails").exists()


@pytest.mark.django_db(transaction=True)
def test_hostile_frames_get_an_error_and_change_nothing(make_org, make_member):
    organisation, _ = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    operator = make_member(organisation, Role.OPERATOR)
    hostile = [
        ({"bytes_data": b"\x00\x01binary"}, "invalid", "Binary frames"),
        ({"text_data": "{not json"}, "invalid", "JSON objects"),
        ({"text_data": "[" * 5000}, "invalid", "JSON objects"),  # past the decoder's recursion limit
        ({"text_data": json.dumps([{"type": "start"}])}, "invalid", "JSON objects"),
        ({"text_data": json.dumps("start")}, "invalid", "JSON objects"),
        ({"text_data": json.dumps({"type": "start", "pad": "x" * 16_400})}, "too_large", "at most 16 KB"),
        ({"text_data": json.dumps({"type": "message", "text": "é" * 9000})}, "too_large", "at most 16 KB"),
        ({"text_data": json.dumps({"type": "dance"})}, "invalid", "Unknown frame type"),
        ({"text_data": json.dumps({"type": None})}, "invalid", "Unknown frame type"),
    ]

    async def scenario():
        widget = Socket(application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", SITE)])
        assert (await widget.connect())[0]
        inbox = Socket(application, "/ws/inbox/", headers=await sync_to_async(member_headers)(operator))
        assert (await inbox.connect())[0]
        await _drain(inbox, 0.3)
        for socket in (widget, inbox):
            for frame, code, message in hostile:
                await socket.send_to(**frame)
                reply = (await _frames_until(socket, lambda f: f["type"] == "error"))[-1]["error"]
                if socket is inbox and code == "invalid" and message == "Unknown frame type":
                    message = "presence or typing frames only"
                assert reply["code"] == code and message in reply["message"], (frame, reply)
        # still open, and nothing was stored: the first conversation starts now
        assert await sync_to_async(lambda: Conversation.objects.for_org(organisation).count())() == 0
        await widget.send_json_to({"type": "start"})
        assert (await widget.receive_json_from())["type"] == "conversation"
        await inbox.send_json_to({"type": "presence"})
        assert (await _frames_until(inbox, lambda f: f["type"] == "presence"))[-1]["data"]["ttl"] > 0
        await widget.disconnect()
        await inbox.disconnect()

    run_sockets(scenario)
    assert list(Message.objects.for_org(organisation).values_list("sender", flat=True)) == ["bot"]


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to receive what Django's SMTP backend sends (no TLS, no auth)."""

    def handle(self):
        self.wfile.write(b"220 test ESMTP\r\n")
        lines: list[bytes] = []
        reading = False
        while line := self.rfile.readline():
            if reading:
                if line.rstrip(b"\r\n") == b".":
                    reading = False
                    self.server.received.append(b"".join(lines))  # type: ignore[attr-defined]
                    lines = []
                    self.wfile.write(b"250 queued\r\n")
                else:
                    lines.append(line[1:] if line.startswith(b"..") else line)
                continue
            command = line[:4].upper()
            if command == b"DATA":
                reading = True
                self.wfile.write(b"354 go on\r\n")
            elif command == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_transcript_goes_through_a_real_worker_and_smtp(make_org):
    from tests.worker import celery_worker, wait_for

    organisation, _ = make_org("Worker Shop")
    bot = services.bot_settings_for(organisation=organisation)
    conversation, _, _ = services.conversation_start(bot=bot)
    services.visitor_message_store(conversation=conversation, text="Where is my <b>parcel</b>?")
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.received = []  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    smtp = f"smtp://127.0.0.1:{server.server_address[1]}"
    try:
        with celery_worker(queues="default", extra_env={"EMAIL_URL": smtp}) as proc:
            services.transcript_request(conversation=conversation, email="visitor@example.com")
            [raw] = wait_for(lambda: server.received, proc=proc)
            wait_for(
                lambda: UsageEvent.objects.for_org(organisation).filter(meter="transcript_emails").exists()
            )
    finally:
        server.shutdown()
        server.server_close()
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert mail["To"] == "visitor@example.com" and mail["Subject"] == "Your conversation with Worker Shop"
    text = mail.get_body(preferencelist=("plain",)).get_content()
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "You: Where is my <b>parcel</b>?" in text and bot.greeting in text
    assert "Where is my &lt;b&gt;parcel&lt;/b&gt;?" in html and "<b>parcel" not in html
