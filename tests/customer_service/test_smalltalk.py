"""Small talk: a greeting, thanks or goodbye on its own is answered by the bot (the tenant's greeting for a
greeting) instead of going to the intent model; anything with a question in it still goes to the model."""

import pytest

from customer_service import services
from customer_service.models import AnswerSource, ConversationStatus, Sender
from customer_service.services.smalltalk import GOODBYE_REPLY, THANKS_REPLY, small_talk_kind


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("hello", "greeting"),
        ("Hi!", "greeting"),
        ("hey there 👋", "greeting"),
        ("Good morning", "greeting"),
        ("thanks", "thanks"),
        ("Thank you very much for your help!", "thanks"),
        ("hi, thanks", "thanks"),
        ("ok, cheers", "thanks"),
        ("bye", "goodbye"),
        ("See you later", "goodbye"),
        ("Goodbye and have a nice day", "goodbye"),
    ],
)
def test_a_greeting_thanks_or_goodbye_alone_is_small_talk(text, kind):
    assert small_talk_kind(text) == kind


@pytest.mark.parametrize(
    "text",
    [
        "hi, my card is blocked",
        "thanks, but where is my refund?",
        "hello is anyone there",
        "good",
        "ok",
        "",
        "thank you thank you thank you thank you thank you thank you thank you",  # longer than a pleasantry
        "I said hello to the cashier and my card was swallowed",
    ],
)
def test_a_message_with_more_in_it_is_not_small_talk(text):
    assert small_talk_kind(text) is None


@pytest.mark.django_db
def test_the_bot_answers_small_talk_and_keeps_the_conversation(make_org):
    organisation, _owner = make_org()
    services.article_save(
        organisation=organisation, title="Parking", body="Free parking behind every branch."
    )
    bot = services.bot_settings_update(
        organisation=organisation, greeting="Hello, I am Ada. Ask me anything."
    )
    conversation, _token, _greeting = services.conversation_start(bot=bot, origin="https://shop.example.com")

    _visitor, reply = services.visitor_message(conversation=conversation, text="Hello!")
    assert (reply.sender, reply.source, reply.text) == (
        Sender.BOT,
        AnswerSource.SMALLTALK,
        "Hello, I am Ada. Ask me anything.",
    )
    _visitor, reply = services.visitor_message(conversation=conversation, text="Is there parking for my car?")
    assert reply.source == AnswerSource.ARTICLE  # a question after it goes on as before
    _visitor, reply = services.visitor_message(conversation=conversation, text="thanks a lot")
    assert (reply.source, reply.text) == (AnswerSource.SMALLTALK, THANKS_REPLY)
    _visitor, reply = services.visitor_message(conversation=conversation, text="bye")
    assert (reply.source, reply.text) == (AnswerSource.SMALLTALK, GOODBYE_REPLY)
    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.BOT  # nobody was called for a pleasantry

    _visitor, reply = services.visitor_message(conversation=conversation, text="hi, a human please")
    assert reply.source == AnswerSource.HANDOFF  # asking for a person still wins
