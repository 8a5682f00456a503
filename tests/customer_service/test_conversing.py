"""A bot that converses before it gives up: suggestions as buttons (the visitor's pick labels the question
for the next retrain), asking to rephrase once, per-intent thresholds, the operating-point table, office
hours and operators' presence (nobody online -> the visitor's e-mail address asked for and stored).

Over real websockets (the Redis channel layer) through the ASGI application; one trained model (bot_org)."""

import time
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.test import Client

from core.asgi import application
from core.billing import flusher
from core.billing.models import Meter, UsageEvent
from core.errors import InvalidInput
from core.tenancy.models import Role
from customer_service import services
from customer_service.models import (
    AnswerSource,
    BotSettings,
    Conversation,
    ConversationStatus,
    LabelSource,
    Message,
)
from tests.customer_service.conftest import PARKING, banking_rows, login, member_headers
from tests.sockets import Socket, run_sockets

SITE = b"https://shop.example.com"
PIN = "You can change your PIN at any of our ATMs."
ARRIVAL = "Cards arrive within 5 working days."


async def _next(socket, wanted: str = "message", timeout: float = 20):
    while True:
        frame = await socket.receive_json_from(timeout=timeout)
        if frame["type"] == wanted:
            return frame


async def _next_from(socket, sender: str, timeout: float = 20):
    while True:
        frame = await _next(socket, "message", timeout)
        if frame["data"]["sender"] == sender:
            return frame


async def _status(socket, wanted: str) -> dict:
    """The first status frame with status ``wanted`` (each change of the status is announced)."""
    while True:
        frame = await _next(socket, "status")
        if frame["data"]["status"] == wanted:
            return frame["data"]


async def _no_answer(socket) -> None:
    """Nothing but status frames for a while: the bot said nothing."""
    while not await socket.receive_nothing(timeout=0.7):
        frame = await socket.receive_json_from()
        assert frame["type"] == "status", frame


async def _widget(bot: BotSettings):
    widget = Socket(application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", SITE)])
    assert (await widget.connect())[0]
    await widget.send_json_to({"type": "start"})
    started = await _next(widget, "conversation")
    await _next(widget)  # the greeting
    return widget, started["data"]


def _question(label: str) -> str:
    return next(text for text, category in banking_rows("test_slice.csv") if category == label)


@pytest.mark.django_db(transaction=True)
def test_suggestions_label_the_question_per_intent_thresholds_and_the_operating_point(bot_org, make_org):
    cache.clear()
    organisation, owner, version_id = bot_org
    other, other_owner = make_org()
    services.template_save(organisation=organisation, intent="change_pin", body=PIN)
    services.template_save(organisation=organisation, intent="card_arrival", body=ARRIVAL)
    # never sure enough by the global threshold; change_pin has its own, lower one
    bot = services.bot_settings_update(
        organisation=organisation,
        intent_threshold=1.0,
        intent_thresholds={"change_pin": 0.0},
        uncertain_mode="suggest",
        suggestion_floor=0.0,
    )
    assert services.intent_threshold_for(bot=bot, intent="change_pin") == 0.0
    assert services.intent_threshold_for(bot=bot, intent="card_arrival") == 1.0
    pin_question, arrival_question = _question("change_pin"), _question("card_arrival")
    decided = services.decide(organisation=organisation, bot=bot, text=pin_question)
    assert decided.source == AnswerSource.TEMPLATE and decided.text == PIN  # its own threshold: answered
    swapped = services.bot_settings_update(
        organisation=organisation, intent_threshold=0.0, intent_thresholds={"change_pin": 1.0}
    )
    decided = services.decide(organisation=organisation, bot=swapped, text=pin_question)
    assert decided.source == AnswerSource.SUGGESTIONS  # change_pin's own threshold 1.0 wins over 0.0
    services.bot_settings_update(
        organisation=organisation, intent_threshold=1.0, intent_thresholds={"change_pin": 0.0}
    )
    with pytest.raises(InvalidInput, match="threshold of 'change_pin'"):
        services.bot_settings_update(organisation=organisation, intent_thresholds={"change_pin": 1.5})
    other_bot = services.bot_settings_for(organisation=other)

    async def scenario():
        widget, conversation = await _widget(bot)
        await widget.send_json_to({"type": "message", "text": arrival_question})
        offered = await _next_from(widget, "bot")
        data = offered["data"]
        assert data["source"] == "suggestions" and data["text"].startswith("Did you mean: ")
        assert "intent" not in data and "confidence" not in data  # the visitor sees labels only
        options = data["suggestions"]["options"]
        assert set(options) == {"Card arrival", "Change pin"} and not data["suggestions"]["answered"]
        assert data["suggestions"]["none"] == "None of these / talk to a person"

        # another tenant's widget cannot answer these suggestions
        stranger, _ = await _widget(other_bot)
        await stranger.send_json_to({"type": "choose", "message": data["id"], "option": 0})
        assert (await _next(stranger, "error"))["error"]["code"] == "not_found"
        await stranger.disconnect()

        await widget.send_json_to({"type": "choose", "message": data["id"], "option": 7})
        assert "Choose one of the 2 suggestions" in (await _next(widget, "error"))["error"]["message"]
        await widget.send_json_to(
            {"type": "choose", "message": data["id"], "option": options.index("Card arrival")}
        )
        choice = await _next_from(widget, "visitor")
        answer = await _next_from(widget, "bot")
        assert choice["data"]["text"] == "Card arrival" and choice["data"]["source"] == "choice"
        assert answer["data"]["source"] == "template" and answer["data"]["text"] == ARRIVAL
        await widget.send_json_to({"type": "choose", "message": data["id"], "option": 0})
        assert "already answered" in (await _next(widget, "error"))["error"]["message"]

        # its own threshold: change_pin is answered at once
        await widget.send_json_to({"type": "message", "text": pin_question})
        assert (await _next_from(widget, "bot"))["data"]["text"] == PIN

        # none of these -> a person; nobody online: the bot says so and asks for an e-mail address
        await widget.send_json_to({"type": "message", "text": arrival_question + " really?"})
        offered = await _next_from(widget, "bot")
        await widget.send_json_to({"type": "choose", "message": offered["data"]["id"], "option": "none"})
        assert (await _next_from(widget, "visitor"))["data"]["text"] == "None of these / talk to a person"
        handoff = await _next_from(widget, "system")
        assert handoff["data"]["source"] == "handoff" and "e-mail address" in handoff["data"]["text"]
        await widget.disconnect()
        return conversation

    conversation = run_sockets(scenario)
    stored = Conversation.objects.for_org(organisation).get(public_id=conversation["id"])
    assert (
        stored.status == ConversationStatus.WAITING
        and "None of the bot's suggestions" in stored.handoff_reason
    )
    # the visitor's pick is a labelled example on the corrections path, for the next retrain
    labelled = Message.objects.for_org(organisation).get(text=arrival_question)
    assert (labelled.corrected_intent, labelled.label_source) == ("card_arrival", LabelSource.VISITOR)
    assert f"{arrival_question},card_arrival" in services.corrections_csv(organisation=organisation).decode()
    assert services.corrections_csv(organisation=other).decode().strip() == "text,label"
    # an operator's correction wins over a visitor's pick, never the other way round
    services.message_correct_intent(organisation=organisation, message_id=labelled.pk, intent="change_pin")
    services.message_label_by_visitor(
        organisation=organisation, message_id=labelled.pk, intent="card_arrival"
    )
    labelled.refresh_from_db()
    assert (labelled.corrected_intent, labelled.label_source) == ("change_pin", LabelSource.OPERATOR)

    # the operating point: the held-out coverage curve stored with the version, shown and picked
    client = login(owner)
    page = client.get("/customer-service/")
    assert page.status_code == 200 and b'id="operating-points"' in page.content
    points = page.context["operating_points"]
    assert len(points) == 19 and points[0]["answered"] >= points[-1]["answered"]
    assert all(0 <= p["wrong"] <= p["answered"] <= 100 for p in points)
    assert b'data-threshold="0.50"' in page.content and b"Use 0.50" in page.content
    assert client.post("/customer-service/settings/threshold/", {"threshold": "0.45"}).status_code == 302
    assert services.bot_settings_for(organisation=organisation).intent_threshold == 0.45
    assert services.bot_settings_for(organisation=other).intent_threshold == 0.5
    refused = client.post("/customer-service/settings/intent-thresholds/", {"threshold-change_pin": "2"})
    assert refused.status_code == 400 and b"threshold of &#x27;change_pin&#x27;" in refused.content
    saved = client.post("/customer-service/settings/intent-thresholds/", {"threshold-card_arrival": "0.8"})
    assert saved.status_code == 302
    assert services.bot_settings_for(organisation=organisation).intent_thresholds == {"card_arrival": 0.8}
    stranger_page = login(other_owner).get("/customer-service/")
    assert (
        stranger_page.context["operating_points"] is None
        and b'id="operating-points"' not in stranger_page.content
    )


@pytest.mark.django_db(transaction=True)
def test_rephrase_once_then_hand_off_to_an_online_operator(make_org, make_member):
    cache.clear()
    organisation, _owner = make_org()
    other, other_owner = make_org()
    bot = services.bot_settings_update(organisation=organisation, uncertain_mode="rephrase")
    operator = make_member(organisation, Role.OPERATOR)

    async def scenario():
        # another organisation's operator online does not count for this one
        strangers = Socket(
            application, "/ws/inbox/", headers=await sync_to_async(member_headers)(other_owner)
        )
        assert (await strangers.connect())[0]
        assert await sync_to_async(services.operators_online)(organisation=organisation) == 0
        assert await sync_to_async(services.operators_online)(organisation=other) == 1
        inbox = Socket(application, "/ws/inbox/", headers=await sync_to_async(member_headers)(operator))
        assert (await inbox.connect())[0]
        assert await sync_to_async(services.operators_online)(organisation=organisation) == 1
        await inbox.send_json_to({"type": "presence"})
        assert (await _next(inbox, "presence"))["data"]["ttl"] == 60

        widget, _conversation = await _widget(bot)
        await widget.send_json_to({"type": "message", "text": "blorp the frobnicator"})
        asked = await _next_from(widget, "bot")
        assert asked["data"]["source"] == "rephrase" and asked["data"]["text"] == bot.rephrase_message
        await widget.send_json_to({"type": "message", "text": "frobnicate the blorp, please"})
        handoff = await _next_from(widget, "system")  # asked once: now a person
        assert handoff["data"]["source"] == "handoff" and handoff["data"]["text"] == bot.handoff_message
        assert await _status(widget, "waiting") == {"status": "waiting", "email_requested": False}
        await widget.send_json_to({"type": "message", "text": "ok, waiting"})
        await _next_from(widget, "visitor")
        await _no_answer(widget)  # an operator is coming: the bot stays quiet

        await inbox.disconnect()  # the tab closed: no longer online
        assert await sync_to_async(services.operators_online)(organisation=organisation) == 0
        await strangers.disconnect()
        await widget.disconnect()

    run_sockets(scenario)
    conversation = Conversation.objects.for_org(organisation).get()
    assert conversation.status == ConversationStatus.WAITING and not conversation.email_requested
    sources = list(Message.objects.for_org(organisation).exclude(source="").values_list("source", flat=True))
    assert sources == ["greeting", "rephrase", "handoff"]


@pytest.mark.django_db(transaction=True)
def test_nobody_online_or_outside_office_hours_the_bot_takes_an_email(make_org, make_member, settings):
    cache.clear()
    organisation, owner = make_org()
    bot = services.bot_settings_update(organisation=organisation, uncertain_mode="handoff")
    operator = make_member(organisation, Role.OPERATOR)
    parking = services.article_save(organisation=organisation, title="Parking", body=PARKING)

    async def scenario():
        widget, conversation = await _widget(bot)
        await widget.send_json_to({"type": "message", "text": "I want to talk to a human"})
        handoff = await _next_from(widget, "system")
        assert handoff["data"]["text"].startswith("Nobody from our team is online right now.")
        assert "e-mail address" in handoff["data"]["text"]
        assert await _status(widget, "waiting") == {"status": "waiting", "email_requested": True}
        # a question meanwhile (no "@"): answered if the bot is sure; the hand-off still waits for an address
        await widget.send_json_to({"type": "message", "text": "Is there parking for my car?"})
        answer = await _next_from(widget, "bot")
        assert answer["data"]["source"] == "article" and answer["data"]["article"] == parking.pk
        still = await sync_to_async(Conversation.objects.for_org(organisation).get)(
            public_id=conversation["id"]
        )  # the status is unchanged, so no status frame says it again
        assert (still.status, still.email_requested, still.visitor_email) == ("waiting", True, "")
        # a question it is not sure of: the address is asked for again, and nothing is charged
        await widget.send_json_to({"type": "message", "text": "My parcel never arrived"})
        asked = await _next_from(widget, "bot")
        assert asked["data"]["source"] == "email"
        assert asked["data"]["text"].startswith("I did not find an e-mail address")
        await widget.send_json_to({"type": "message", "text": "sam@nowhere"})
        again = await _next_from(widget, "bot")
        assert (
            again["data"]["source"] == "email"
            and "does not look like an e-mail address" in again["data"]["text"]
        )
        await widget.send_json_to({"type": "message", "text": "It is Sam.Jones@Example.com."})
        thanks = await _next_from(widget, "bot")
        assert "sam.jones@example.com" in thanks["data"]["text"]
        await widget.send_json_to({"type": "message", "text": "thanks"})
        await _next_from(widget, "visitor")
        await _no_answer(widget)  # the address is noted: the chat waits for a person
        await widget.disconnect()
        return conversation

    public_id = run_sockets(scenario)["id"]
    conversation = Conversation.objects.for_org(organisation).get(public_id=public_id)
    assert conversation.status == ConversationStatus.WAITING
    # charged: the hand-off and the article's answer; not the unsure question, nor reading for the address
    flusher.ledger_drain()  # with Redis the lines go through the ledger stream
    assert UsageEvent.objects.for_org(organisation).filter(meter=Meter.PREDICTIONS).count() == 2
    assert (conversation.visitor_email, conversation.email_requested) == ("sam.jones@example.com", False)
    api = Client()
    api.force_login(owner)
    listed = api.get(f"/api/customer-service/conversations/{conversation.pk}/").json()
    assert listed["visitor_email"] == "sam.jones@example.com"

    # office hours: an operator online, but today is closed in the tenant's time zone
    services.operator_presence_mark(organisation_id=organisation.pk, user_id=operator.pk, channel="tab-1")
    assert services.handoff_availability(organisation=organisation, bot=bot).available
    today = datetime.now(tz=UTC).astimezone(ZoneInfo("Pacific/Auckland")).weekday()
    services.bot_settings_update(
        organisation=organisation,
        timezone="Pacific/Auckland",
        office_hours={str((today + 1) % 7): ["09:00", "17:00"]},
        office_hours_enabled=True,
    )
    closed_bot = services.bot_settings_for(organisation=organisation)
    conversation2, _token, _greeting = services.conversation_start(bot=closed_bot)
    _visitor, reply = services.visitor_message(conversation=conversation2, text="talk to a person please")
    assert reply.text.startswith("Our team is away right now. Our hours are ")
    assert "(Pacific/Auckland)" in reply.text and "e-mail address" in reply.text
    # a killed browser stops counting once its presence lapses
    services.operator_presence_mark(
        organisation_id=organisation.pk, user_id=operator.pk, channel="tab-1", now=time.time() - 61
    )
    assert services.operators_online(organisation=organisation) == 0


def test_office_hours_are_read_in_the_tenants_time_zone():
    bot = BotSettings(
        office_hours_enabled=True, timezone="Europe/Berlin", office_hours={"0": ["09:00", "17:00"]}
    )
    monday = datetime(2026, 11, 30, tzinfo=UTC)  # a Monday; Berlin is UTC+1 in winter
    assert services.within_office_hours(bot=bot, now=monday.replace(hour=8))  # 09:00 in Berlin
    assert not services.within_office_hours(bot=bot, now=monday.replace(hour=7, minute=59))
    assert not services.within_office_hours(bot=bot, now=monday.replace(hour=16))  # 17:00 in Berlin
    assert not services.within_office_hours(bot=bot, now=monday.replace(day=1, month=12, hour=10))  # Tuesday
    assert services.within_office_hours(bot=BotSettings(office_hours_enabled=False), now=monday)
    assert services.office_hours_check({"4": [" 08:30", "24:00"], 0: ["09:00", "17:00"]}) == {
        "0": ["09:00", "17:00"],
        "4": ["08:30", "24:00"],
    }
    for bad, message in (
        ({"7": ["09:00", "17:00"]}, "not a weekday"),
        ({"1": ["17:00", "09:00"]}, "Tuesday: the end must be after the start"),
        ({"2": ["9am", "17:00"]}, "Wednesday: times are HH:MM"),
        ({"3": ["09:00"]}, "Thursday: give a start and an end"),
        (["09:00"], "must map weekdays"),
    ):
        with pytest.raises(InvalidInput, match=message):
            services.office_hours_check(bad)
    assert services.email_from_text("mail me at a.b@example.org!") == "a.b@example.org"
    assert services.email_from_text("me@localhost or @@") is None


@pytest.mark.django_db
def test_setup_page_saves_office_hours_and_the_uncertain_mode(make_org, make_member):
    organisation, owner = make_org()
    other, _other_owner = make_org()
    client = login(owner)
    page = client.get("/customer-service/")
    assert b'id="office-hours-form"' in page.content and b'id="conversing-form"' in page.content
    hours = {"office_hours_enabled": "on", "timezone": "Mars/Olympus", "start_0": "09:00", "end_0": "17:00"}
    refused = client.post("/customer-service/settings/office-hours/", hours)
    assert refused.status_code == 400 and b"is not a time zone" in refused.content
    refused = client.post(
        "/customer-service/settings/office-hours/", {**hours, "timezone": "UTC", "end_0": ""}
    )
    assert refused.status_code == 400 and b"Give both a start and an end" in refused.content
    saved = client.post("/customer-service/settings/office-hours/", {**hours, "timezone": "Europe/Paris"})
    assert saved.status_code == 302
    bot = services.bot_settings_for(organisation=organisation)
    assert (bot.office_hours_enabled, bot.timezone, bot.office_hours) == (
        True,
        "Europe/Paris",
        {"0": ["09:00", "17:00"]},
    )
    assert services.bot_settings_for(organisation=other).office_hours == {}
    mode = {"uncertain_mode": "rephrase", "suggestion_floor": "0.2", "rephrase_message": "Say again?"}
    assert (
        client.post("/customer-service/settings/uncertain/", {**mode, "uncertain_mode": "guess"}).status_code
        == 400
    )
    assert client.post("/customer-service/settings/uncertain/", mode).status_code == 302
    bot.refresh_from_db()
    assert (bot.uncertain_mode, bot.suggestion_floor, bot.rephrase_message) == ("rephrase", 0.2, "Say again?")
    viewer = make_member(organisation, Role.VIEWER)
    assert login(viewer).post("/customer-service/settings/uncertain/", mode).status_code == 403
