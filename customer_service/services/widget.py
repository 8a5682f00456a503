"""What the live widget adds around messages: typing signals between visitor, bot and operators, and the
e-mail transcript a visitor asks for.

Typing signals are not stored: they are broadcast (the visitor's to the organisation's inbox, an operator's
to the conversation's widget sockets) and a lost one only hides an indicator. The consumers throttle them.

A transcript request is checked here (the address, one per conversation per ``TRANSCRIPT_EVERY_S``, the
plan's ``transcript_emails`` meter) and handed to a Celery task after commit; the task sends the transcript
through Django's mail backend as plain text, with an HTML part whose every text is escaped, and charges the
meter for what was sent.
"""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.html import escape, linebreaks

from core.billing import services as billing
from core.errors import Conflict, InvalidInput, NotFound, RateLimited
from core.realtime import broadcast, org_group
from customer_service.models import BotSettings, Conversation, ConversationStatus, Message, Sender
from customer_service.services.common import APP
from customer_service.services.conversations import conversation_group, public_name

TRANSCRIPT_EVERY_S = 300
TRANSCRIPT_METER = "transcript_emails"
MAX_EMAIL_CHARS = 254


def visitor_typing(*, conversation: Conversation) -> None:
    """The visitor is typing: the inbox shows it on the conversation (for a few seconds)."""
    broadcast(
        group=org_group(conversation.organisation_id, "inbox"),
        event_type="cs.typing",
        payload={"conversation": conversation.pk, "who": "visitor"},
    )


def operator_typing(*, organisation, conversation_id: Any, user) -> Conversation:
    """An operator is typing a reply in the conversation: its widget shows "<name> is typing"."""
    conversation = (
        Conversation.objects.for_org(organisation).filter(pk=conversation_id).first()
        if isinstance(conversation_id, int) and not isinstance(conversation_id, bool)
        else None
    )
    if conversation is None:
        raise NotFound("No such conversation.")
    if conversation.status == ConversationStatus.CLOSED:
        raise Conflict("This conversation is closed.")
    broadcast(
        group=conversation_group(conversation),
        event_type="cs.typing",
        payload={"who": "operator", "name": public_name(user), "typing": True},
    )
    return conversation


def email_check(value: Any) -> str:
    email = str(value or "").strip() if isinstance(value, str) else ""
    try:
        if not email or len(email) > MAX_EMAIL_CHARS:
            raise ValidationError("bad length")
        validate_email(email)
    except ValidationError:
        raise InvalidInput(
            "Give a valid e-mail address for the transcript, e.g. name@example.com.",
            details={"field": "email"},
        ) from None
    return email


def transcript_request(*, conversation: Conversation, email: Any, now=None) -> str:
    """Queue the conversation's transcript to ``email``: checked, throttled, quota-checked; returns the
    address. The task runs after commit (``customer_service.send_transcript``)."""
    from customer_service import tasks

    email = email_check(email)
    now = now or timezone.now()
    with transaction.atomic():
        locked = Conversation.all_tenants.select_for_update().get(pk=conversation.pk)
        last = locked.transcript_requested_at
        if last is not None and now - last < timedelta(seconds=TRANSCRIPT_EVERY_S):
            wait = int((last + timedelta(seconds=TRANSCRIPT_EVERY_S) - now).total_seconds()) + 1
            raise RateLimited(
                f"A transcript of this conversation was sent just now. Ask again in {wait} s.",
                details={"retry_after": wait},
            )
        billing.quota_check(organisation=locked.organisation, meter=TRANSCRIPT_METER)
        locked.transcript_requested_at = now
        locked.save(update_fields=["transcript_requested_at", "updated_at"])
        transaction.on_commit(lambda: tasks.send_transcript.delay(locked.pk, email))
    return email


def _speaker(message: Message, bot_name: str) -> str:
    if message.sender == Sender.VISITOR:
        return "You"
    if message.sender == Sender.BOT:
        return bot_name
    if message.sender == Sender.OPERATOR:
        return public_name(message.author) if message.author else "Our support team"
    return ""


def transcript_lines(*, conversation: Conversation) -> list[tuple[str, str, str]]:
    """(time, speaker, text) per message the visitor saw, oldest first (internal notes are never here)."""
    bot = BotSettings.all_tenants.filter(organisation_id=conversation.organisation_id).first()
    bot_name = bot.bot_name if bot else "Assistant"
    messages = (
        Message.all_tenants.filter(conversation=conversation)
        .select_related("author")
        .order_by("created_at", "id")
    )
    return [(m.created_at.strftime("%Y-%m-%d %H:%M UTC"), _speaker(m, bot_name), m.text) for m in messages]


def transcript_send(*, conversation_id: int, email: str) -> int:
    """Send the transcript (the task's body); charges one ``transcript_emails``. Returns the messages sent."""
    conversation = Conversation.all_tenants.select_related("organisation").filter(pk=conversation_id).first()
    if conversation is None:
        raise NotFound("The conversation no longer exists.")
    email = email_check(email)
    lines = transcript_lines(conversation=conversation)
    name = conversation.organisation.name
    text = "\n\n".join(f"[{at}] {who + ': ' if who else ''}{body}" for at, who, body in lines)
    html = "".join(
        f"<p><small>{escape(at)}</small> <b>{escape(who)}</b><br>{linebreaks(body, autoescape=True)}</p>"
        for at, who, body in lines
    )
    subject = f"Your conversation with {name}".replace("\r", " ").replace("\n", " ")[:150]
    intro = f"Here is the transcript of your conversation with {name}, as you asked."

    def send() -> int:
        mail = EmailMultiAlternatives(
            subject=subject, body=f"{intro}\n\n{text}\n", from_email=settings.DEFAULT_FROM_EMAIL, to=[email]
        )
        mail.attach_alternative(f"<p>{escape(intro)}</p>{html}", "text/html")
        mail.send(fail_silently=False)
        return len(lines)

    return billing.metered(
        send,
        organisation=conversation.organisation,
        meter=TRANSCRIPT_METER,
        metadata={"app": APP, "conversation": conversation.pk},
    )
