"""A conversation's life: the widget starts and resumes it, the visitor's messages are stored, operators
take it over, reply, hand it back and close it; idle ones are closed and visitors rate them. Every change
is announced to the inbox and the widget after commit (``_announce``); the rows are the truth."""

import hashlib
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from core import statements
from core.errors import Conflict, InvalidInput, NotFound
from core.realtime import broadcast, broadcast_groups, org_group
from customer_service.models import (
    AnswerSource,
    BotSettings,
    Conversation,
    ConversationStatus,
    Message,
    Sender,
)
from customer_service.services import writes
from customer_service.services.visitors import page_check, visitor_hash

MAX_MESSAGE_CHARS = 2000
NONE_LABEL = "None of these / talk to a person"  # the button after the bot's suggestions


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def public_name(user) -> str:
    """How visitors see an operator: the first name, never the e-mail address."""
    return (user.first_name or "").strip() or "Our support team"


def _suggestions_shown(message: Message) -> dict[str, Any] | None:
    """What the widget shows of a suggestions message: the options' labels (picked by position: intent names
    stay internal), the "none of these" button, and whether the visitor answered already."""
    if message.source != AnswerSource.SUGGESTIONS or not message.suggestions:
        return None
    return {
        "options": [option["label"] for option in message.suggestions.get("options", [])],
        "none": NONE_LABEL,
        "answered": bool(message.suggestions.get("chosen")),
    }


def _link(title: str, url: str) -> dict[str, str]:
    return {"title": title, "url": url if urlsplit(url or "").scheme in ("http", "https") else ""}


def _article_link(message: Message) -> dict[str, str] | None:
    """The knowledge-base article an answer came from, as the widget links it: its title, and its address
    only when it is http(s) (the widget also checks; anything else is shown as the title alone)."""
    if message.source not in (AnswerSource.ARTICLE, AnswerSource.GROUNDED) or message.article is None:
        return None
    return _link(message.article.title, message.article.url or "")


def _article_links(message: Message) -> list[dict[str, str]]:
    """Every article a grounded answer cites (as cited), else the one ``_article_link`` gives, if any."""
    if message.source == AnswerSource.GROUNDED and message.citations:
        return [_link(str(c.get("title", "")), str(c.get("url", ""))) for c in message.citations]
    link = _article_link(message)
    return [link] if link else []


def message_payload(message: Message) -> dict[str, Any]:
    return {
        "id": message.pk,
        "conversation": str(message.conversation.public_id),
        "sender": message.sender,
        "author": public_name(message.author) if message.author else "",
        "text": message.text,
        "source": message.source,
        "intent": message.intent,
        "confidence": message.confidence,
        "article": message.article_id,
        "article_link": _article_link(message),
        "article_links": _article_links(message),
        "suggestions": _suggestions_shown(message),
        "client_id": message.client_id,
        "created_at": message.created_at.isoformat(),
    }


def conversation_payload(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "public_id": str(conversation.public_id),
        "status": conversation.status,
        "assigned_to": conversation.assigned_to.email if conversation.assigned_to else None,
        "assigned_to_id": conversation.assigned_to_id,
        "page_url": conversation.page_url,
        "handoff_reason": conversation.handoff_reason,
        "rating": conversation.rating,
        "visitor_email": conversation.visitor_email,
        "email_requested": conversation.email_requested,
        "last_message_at": conversation.last_message_at.isoformat() if conversation.last_message_at else None,
    }


def conversation_group(conversation: Conversation) -> str:
    return f"cs-conversation-{conversation.public_id}"


def _announce(conversation: Conversation, message: Message | None = None, *, status: bool = True) -> None:
    """Push to the operators' inbox and to the visitor's widget (after commit; the rows are the truth): one
    channel-layer message to each group (``broadcast_groups``). ``status``: the widget is told the
    conversation's status too; off where the caller changed nothing of it (a message added to a chat
    whose status stays: the widget's status line is as it was)."""
    inbox, chat = org_group(conversation.organisation_id, "inbox"), conversation_group(conversation)
    events = [(inbox, "cs.conversation", conversation_payload(conversation))]
    if message is not None:
        payload = message_payload(message)
        events += [(inbox, "cs.message", payload), (chat, "cs.message", payload)]
    if status:
        state = {"status": conversation.status, "email_requested": email_wanted(conversation)}
        events.append((chat, "cs.status", state))
    broadcast_groups(events=events)


def email_wanted(conversation: Conversation) -> bool:
    """Whether the bot reads the visitor's next message for the e-mail address it asked for (a hand-off
    when nobody could answer: ``handoff``)."""
    return (
        conversation.status == ConversationStatus.WAITING
        and conversation.email_requested
        and not conversation.visitor_email
    )


def new_message(conversation: Conversation, **fields: Any) -> Message:
    """An unsaved message of the conversation (its organisation the conversation's)."""
    return Message(organisation_id=conversation.organisation_id, conversation=conversation, **fields)


def _add_message(conversation: Conversation, **fields: Any) -> Message:
    """A new message of the conversation, its time the conversation's ``last_message_at`` (the chat's hot
    path: statements built once, ``core.statements``; neither model has signal receivers)."""
    message = statements.insert(new_message(conversation, **fields))
    conversation.last_message_at, conversation.updated_at = message.created_at, timezone.now()
    statements.row_update(
        Conversation,
        conversation.pk,
        last_message_at=conversation.last_message_at,
        updated_at=conversation.updated_at,
    )
    return message


def locked(conversation_id: int) -> Conversation:
    """The conversation as it is now, its row locked until the transaction ends (``select_for_update``)."""
    conversation = statements.row_get(Conversation, lock=True, pk=conversation_id)
    if conversation is None:
        raise NotFound("No such conversation.")
    return conversation


def conversation_start(
    *, bot: BotSettings, origin: str = "", page: Any = "", visitor: Any = ""
) -> tuple[Conversation, str, Message]:
    """A new chat for the widget: returns it, the visitor's resume token (shown once) and the greeting.
    ``page`` and ``visitor``: the page the visitor is on and the widget's visitor id (``visitors``)."""
    page_url, visitor_digest = page_check(page), visitor_hash(visitor)
    token = secrets.token_urlsafe(24)
    with transaction.atomic():
        conversation = Conversation.all_tenants.create(
            organisation=bot.organisation,
            token_hash=_hash(token),
            origin=(origin or "")[:200],
            page_url=page_url,
            visitor_hash=visitor_digest,
        )
        greeting = _add_message(
            conversation, sender=Sender.BOT, text=bot.greeting, source=AnswerSource.GREETING
        )
    return conversation, token, greeting


def conversation_resume(*, bot: BotSettings, public_id: str, token: str, page: Any = "") -> Conversation:
    """The visitor's conversation again (on another page or visit); ``page``, when given, is where they are
    now: the inbox shows it."""
    page_url = page_check(page)
    conversation = (
        Conversation.objects.for_org(bot.organisation)
        .select_related("organisation")  # what answering reads for every message of the socket
        .filter(public_id=public_id)
        .first()
        if _is_uuid(public_id)
        else None
    )
    if conversation is None or not secrets.compare_digest(conversation.token_hash, _hash(token or "")):
        raise NotFound("No such conversation.")
    if page_url and page_url != conversation.page_url:
        with transaction.atomic():
            Conversation.all_tenants.filter(pk=conversation.pk).update(
                page_url=page_url, updated_at=timezone.now()
            )
            conversation.page_url = page_url
            broadcast(
                group=org_group(conversation.organisation_id, "inbox"),
                event_type="cs.conversation",
                payload=conversation_payload(conversation),
            )
    return conversation


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _clean_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("The message is empty.", details={"field": "text"})
    text = text.strip()
    if "\x00" in text:  # PostgreSQL cannot store it: refused here, or the socket dies on the insert
        raise InvalidInput("The message may not contain NUL characters.", details={"field": "text"})
    if len(text) > MAX_MESSAGE_CHARS:
        raise InvalidInput(
            f"The message is too long (at most {MAX_MESSAGE_CHARS} characters).", details={"field": "text"}
        )
    return text


_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def client_id_check(value: Any) -> str:
    """The widget's id for a visitor message (1 to 64 letters, digits, ``-`` or ``_``; none: "")."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str) or not _CLIENT_ID.match(value):
        raise InvalidInput(
            "client_id must be 1 to 64 letters, digits, '-' or '_'.", details={"field": "client_id"}
        )
    return value


def visitor_message_store(
    *, conversation: Conversation, text: Any, client_id: Any = None
) -> tuple[Message, bool]:
    """Store the visitor's message; returns it and whether the bot should answer (the bot has the chat, or
    waits for the visitor's e-mail address). A ``client_id`` already stored in the conversation (the widget
    sent the frame again, not having seen its acknowledgement) returns that message, not to be answered
    again."""
    text = _clean_text(text)
    client_id = client_id_check(client_id)
    if writes.one_statement():
        return _visitor_message_store_one(conversation, text, client_id)
    with transaction.atomic():
        conversation = locked(conversation.pk)
        if client_id:  # under the conversation's lock: two copies of a frame cannot both pass
            earlier = statements.row_get(Message, conversation=conversation.pk, client_id=client_id)
            if earlier is not None:
                return earlier, False
        if conversation.status == ConversationStatus.CLOSED:
            raise Conflict("This conversation is closed. Start a new one.")
        message = _add_message(conversation, sender=Sender.VISITOR, text=text, client_id=client_id)
        _announce(conversation, message, status=False)  # a message stored: the status stays
    return message, conversation.status == ConversationStatus.BOT or email_wanted(conversation)


def _visitor_message_store_one(conversation: Conversation, text: str, client_id: str) -> tuple[Message, bool]:
    """``visitor_message_store``'s transaction as one statement (``writes``), the same rules."""
    message = new_message(conversation, sender=Sender.VISITOR, text=text, client_id=client_id)
    current, earlier, stored = writes.message_store(message)
    if current is None:
        raise NotFound("No such conversation.")
    if earlier is not None:
        return earlier, False
    if stored is None:
        # a copy of the frame stored it after this statement's snapshot (it waited for that copy's lock): the
        # unique constraint refused this one; as the transaction's check would, return that message
        copy = None
        if client_id:
            copy = statements.row_get(Message, conversation=current.pk, client_id=client_id)
        if copy is not None:
            return copy, False
        if current.status == ConversationStatus.CLOSED:
            raise Conflict("This conversation is closed. Start a new one.")
        raise Conflict("The message was not stored: send it again.")  # nothing else refuses an insert
    _announce(current, stored, status=False)  # a message stored: the status stays
    return stored, current.status == ConversationStatus.BOT or email_wanted(current)


def _check_assignee(conversation: Conversation, user) -> None:
    if conversation.status == ConversationStatus.OPERATOR and conversation.assigned_to_id not in (
        None,
        user.pk,
    ):
        assignee = conversation.assigned_to
        raise Conflict(f"{assignee.email if assignee else 'Another operator'} is handling this conversation.")


def _operated(organisation, conversation_id: int, *, open_only: bool = True) -> Conversation:
    """The organisation's conversation, locked; Conflict if it is closed (unless ``open_only`` is off)."""
    conversation = (
        Conversation.objects.for_org(organisation).select_for_update().filter(pk=conversation_id).first()
    )
    if conversation is None:
        raise NotFound("No such conversation.")
    if open_only and conversation.status == ConversationStatus.CLOSED:
        raise Conflict("This conversation is closed.")
    return conversation


def conversation_take_over(*, organisation, conversation_id: int, user) -> Conversation:
    """An operator takes the conversation: the bot stops answering. Refused if another operator has it."""
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id)
        _check_assignee(conversation, user)
        conversation.status, conversation.assigned_to = ConversationStatus.OPERATOR, user
        conversation.save(update_fields=["status", "assigned_to", "updated_at"])
        name = public_name(user)
        message = _add_message(conversation, sender=Sender.SYSTEM, text=f"{name} joined the conversation.")
        _announce(conversation, message)
    return conversation


def operator_message(*, organisation, conversation_id: int, user, text: Any) -> Message:
    text = _clean_text(text)
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id)
        if conversation.status != ConversationStatus.OPERATOR or conversation.assigned_to_id != user.pk:
            raise Conflict("Take the conversation over before replying.")
        message = _add_message(
            conversation, sender=Sender.OPERATOR, author=user, text=text, source=AnswerSource.OPERATOR
        )
        _announce(conversation, message)
    return message


def conversation_hand_back(*, organisation, conversation_id: int, user) -> Conversation:
    """Give the conversation back to the bot."""
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id)
        _check_assignee(conversation, user)
        conversation.status, conversation.assigned_to, conversation.handoff_reason = (
            ConversationStatus.BOT,
            None,
            "",
        )
        conversation.save(update_fields=["status", "assigned_to", "handoff_reason", "updated_at"])
        message = _add_message(conversation, sender=Sender.SYSTEM, text="The assistant is back with you.")
        _announce(conversation, message)
    return conversation


def _close_locked(conversation: Conversation, by: str) -> None:
    conversation.status, conversation.closed_at = ConversationStatus.CLOSED, timezone.now()
    conversation.save(update_fields=["status", "closed_at", "updated_at"])
    message = _add_message(conversation, sender=Sender.SYSTEM, text=f"The conversation was closed by {by}.")
    _announce(conversation, message)


def conversation_close(*, conversation: Conversation, by: str) -> Conversation:
    with transaction.atomic():
        conversation = locked(conversation.pk)
        if conversation.status != ConversationStatus.CLOSED:
            _close_locked(conversation, by)
    return conversation


def conversation_close_by_operator(*, organisation, conversation_id: int, user) -> Conversation:
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id, open_only=False)
        _check_assignee(conversation, user)
        if conversation.status != ConversationStatus.CLOSED:
            _close_locked(conversation, public_name(user))
    return conversation


def conversations_close_idle(*, older_than_hours: float) -> int:
    """Close conversations left with the bot and idle that long (waiting ones stay for a person)."""
    from datetime import timedelta

    cutoff = timezone.now() - timedelta(hours=older_than_hours)
    idle = Conversation.all_tenants.filter(status=ConversationStatus.BOT, last_message_at__lt=cutoff)
    count = 0
    for pk in list(idle.values_list("pk", flat=True)):
        with transaction.atomic():  # re-checked under the lock: the visitor may have just written
            conversation = statements.row_get(Conversation, lock=True, pk=pk)
            if conversation is None:
                continue  # deleted meanwhile (its organisation's deletion): nothing to close
            last = conversation.last_message_at
            if conversation.status == ConversationStatus.BOT and last is not None and last < cutoff:
                _close_locked(conversation, "the assistant after a quiet while")
                count += 1
    return count


def conversation_rate(*, conversation: Conversation, rating: Any) -> Conversation:
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise InvalidInput("The rating must be a whole number from 1 to 5.", details={"field": "rating"})
    Conversation.all_tenants.filter(pk=conversation.pk).update(rating=rating, updated_at=timezone.now())
    conversation.rating = rating
    return conversation
