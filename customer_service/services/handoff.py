"""Handing a conversation to a person, and what the bot tells the visitor then (never silence).

Within office hours and with an operator online, the bot says the tenant's hand-off message and the
conversation waits in the inbox. Otherwise (``availability``) it says that nobody can answer now, asks for
the visitor's e-mail address and keeps the conversation waiting; the visitor's next messages are read for
that address (validated) until one is given, and it is stored on the conversation for the operators.
``email_wanted`` (in ``conversations``) says when the bot reads for the address. Callers hold the
conversation's row lock (``select_for_update``) inside a transaction.
"""

import re

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from customer_service.models import (
    AnswerSource,
    BotSettings,
    Conversation,
    ConversationStatus,
    Message,
    Sender,
)
from customer_service.services.availability import handoff_availability, office_hours_text
from customer_service.services.conversations import _add_message, _announce

EMAIL_CANDIDATE = re.compile(r"[^\s<>(),;:\"']+@[^\s<>(),;:\"']+")
NOBODY_ONLINE = "Nobody from our team is online right now."
ASK_EMAIL = "Leave your e-mail address here and we will answer you by e-mail as soon as we can."


def handoff_text(*, conversation: Conversation, bot: BotSettings) -> tuple[str, bool]:
    """What the bot says on handing off, and whether it asks for the visitor's e-mail address."""
    availability = handoff_availability(organisation=conversation.organisation, bot=bot)
    if availability.available:
        return bot.handoff_message, False
    if availability.reason == "closed":
        away = f"Our team is away right now. Our hours are {office_hours_text(bot=bot)}."
    else:
        away = NOBODY_ONLINE
    if conversation.visitor_email:
        return f"{away} We will answer you at {conversation.visitor_email} as soon as we can.", False
    return f"{away} {ASK_EMAIL}", True


def hand_off_locked(
    conversation: Conversation,
    *,
    bot: BotSettings,
    reason: str,
    intent: str = "",
    confidence: float | None = None,
    model_version_id: int | None = None,
) -> Message:
    """Hand the (locked) conversation to a person: it waits in the inbox; the visitor is told what next."""
    text, ask_email = handoff_text(conversation=conversation, bot=bot)
    reply = _add_message(
        conversation,
        sender=Sender.SYSTEM,
        text=text,
        source=AnswerSource.HANDOFF,
        intent=intent,
        confidence=confidence,
        model_version_id=model_version_id,
    )
    conversation.status = ConversationStatus.WAITING
    conversation.handoff_reason = reason[:200]
    conversation.email_requested = ask_email
    conversation.save(update_fields=["status", "handoff_reason", "email_requested", "updated_at"])
    _announce(conversation, reply)
    return reply


def email_from_text(text: str) -> str | None:
    """The valid e-mail address in ``text`` (the first one that looks like one), or None."""
    for candidate in EMAIL_CANDIDATE.findall(text):
        candidate = candidate.rstrip(".!?")
        try:
            validate_email(candidate)
        except ValidationError:
            continue
        if len(candidate) <= 254 and "." in candidate.rsplit("@", 1)[1]:  # not user@localhost
            return candidate.lower()
    return None


def email_reply_locked(conversation: Conversation, *, text: str) -> Message:
    """Read a visitor message for the e-mail address the bot asked for: store it and say what comes next, or
    ask again, saying what is wrong."""
    email = email_from_text(text)
    if email is None:
        wrong = (
            "That does not look like an e-mail address" if "@" in text else "I did not find an e-mail address"
        )
        reply = _add_message(
            conversation,
            sender=Sender.BOT,
            text=f"{wrong}. Please type it like name@example.com, so that our team can answer you.",
            source=AnswerSource.EMAIL,
        )
    else:
        conversation.visitor_email, conversation.email_requested = email, False
        conversation.save(update_fields=["visitor_email", "email_requested", "updated_at"])
        reply = _add_message(
            conversation,
            sender=Sender.BOT,
            text=f"Thank you. Our team will answer you at {email} as soon as they can; this chat stays open "
            "for them too.",
            source=AnswerSource.EMAIL,
        )
    _announce(conversation, reply)
    return reply
