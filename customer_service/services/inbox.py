"""What operators do in the inbox besides chatting: internal notes, saved replies, assignment and marking a
conversation seen (its unread count).

Notes are for operators only: they are ``InternalNote`` rows, not messages, so nothing that replays or
forwards a conversation's messages to the visitor (the widget's history, its group) can carry one, and they
are broadcast to the organisation's inbox group alone (``cs.note``). Assignment names who handles a
conversation: only a member whose role may operate the inbox can be named, and a conversation another
operator is handling moves only by that operator's hand or an admin's (the edge says which the actor is).
"""

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from core.errors import Conflict, InvalidInput, NotFound
from core.realtime import broadcast, org_group
from core.tenancy.models import Membership
from core.tenancy.roles import role_can
from customer_service.models import ConversationStatus, InternalNote, Message, SavedReply, Sender
from customer_service.services.conversations import (
    MAX_MESSAGE_CHARS,
    _add_message,
    _announce,
    _operated,
    conversation_payload,
    public_name,
)

MAX_NOTE_CHARS = 5000
MAX_SAVED_REPLY_TITLE = 80
MAX_SAVED_REPLIES = 500


def _text(value: Any, *, field: str, limit: int, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"The {what} is empty.", details={"field": field})
    value = value.strip()
    if "\x00" in value:
        raise InvalidInput(f"The {what} may not contain NUL characters.", details={"field": field})
    if len(value) > limit:
        raise InvalidInput(f"The {what} is too long (at most {limit} characters).", details={"field": field})
    return value


# --- internal notes -----------------------------------------------------------------------------------


def note_payload(note: InternalNote) -> dict[str, Any]:
    return {
        "id": note.pk,
        "conversation": note.conversation_id,
        "author": note.author.email if note.author else None,
        "text": note.text,
        "created_at": note.created_at.isoformat(),
    }


def note_add(*, organisation, conversation_id: int, user, text: Any) -> InternalNote:
    """An operator's note on the conversation (closed ones too: a follow-up is worth noting)."""
    text = _text(text, field="text", limit=MAX_NOTE_CHARS, what="note")
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id, open_only=False)
        note = InternalNote.all_tenants.create(
            organisation_id=organisation.pk, conversation=conversation, author=user, text=text
        )
        broadcast(  # the inbox only: never the conversation's group, where the visitor's widget listens
            group=org_group(organisation.pk, "inbox"), event_type="cs.note", payload=note_payload(note)
        )
    return note


# --- saved replies ------------------------------------------------------------------------------------


def saved_reply_save(*, organisation, title: Any, body: Any, reply_id: int | None = None) -> SavedReply:
    """Create a saved reply, or change the one with ``reply_id``. Titles are unique per organisation."""
    title = _text(title, field="title", limit=MAX_SAVED_REPLY_TITLE, what="title")
    body = _text(body, field="body", limit=MAX_MESSAGE_CHARS, what="reply")
    replies = SavedReply.objects.for_org(organisation)
    same_title = replies.filter(title__iexact=title)
    if (same_title.exclude(pk=reply_id) if reply_id is not None else same_title).exists():
        raise InvalidInput(f"A saved reply titled '{title}' exists already.", details={"field": "title"})
    try:
        with transaction.atomic():
            if reply_id is None:
                if replies.count() >= MAX_SAVED_REPLIES:
                    raise InvalidInput(f"An organisation keeps at most {MAX_SAVED_REPLIES} saved replies.")
                return SavedReply.all_tenants.create(organisation=organisation, title=title, body=body)
            reply = replies.select_for_update().filter(pk=reply_id).first()
            if reply is None:
                raise NotFound("No such saved reply.")
            reply.title, reply.body = title, body
            reply.save(update_fields=["title", "body", "updated_at"])
            return reply
    except IntegrityError:  # the same title saved at the same moment by someone else
        raise InvalidInput(
            f"A saved reply titled '{title}' exists already.", details={"field": "title"}
        ) from None


def saved_reply_delete(*, organisation, reply_id: int) -> None:
    deleted, _ = SavedReply.objects.for_org(organisation).filter(pk=reply_id).delete()
    if not deleted:
        raise NotFound("No such saved reply.")


# --- assignment ---------------------------------------------------------------------------------------


def _operator(organisation, user_id: Any):
    """The organisation's member ``user_id`` whose role may operate the inbox, or InvalidInput."""
    if isinstance(user_id, bool) or not isinstance(user_id, int):
        raise InvalidInput("operator must be a member's user id, or null.", details={"field": "operator"})
    membership = (
        Membership.objects.for_org(organisation).select_related("user").filter(user_id=user_id).first()
    )
    if membership is None:
        raise InvalidInput(
            "Assign conversations to members of this organisation only.", details={"field": "operator"}
        )
    if not role_can(membership.role, "inbox.operate"):
        raise InvalidInput(
            f"{membership.user.email} is a {membership.role}: only owners, admins and operators chat.",
            details={"field": "operator"},
        )
    return membership.user


def conversation_assign(
    *, organisation, conversation_id: int, actor, operator_id: int | None, may_reassign: bool = False
):
    """Name the operator who handles the conversation (``None``: nobody). A conversation an operator is
    handling moves only by their own hand or an admin's (``may_reassign``); it then goes to the new operator
    at once (the visitor is told who joined), or back to the queue (waiting) when nobody is named."""
    assignee = _operator(organisation, operator_id) if operator_id is not None else None
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id)
        handling = conversation.status == ConversationStatus.OPERATOR
        if handling and conversation.assigned_to_id not in (None, actor.pk) and not may_reassign:
            holder = conversation.assigned_to
            raise Conflict(
                f"{holder.email if holder else 'Another operator'} is handling this conversation: "
                "only they or an admin may pass it on."
            )
        if conversation.assigned_to_id == (assignee.pk if assignee else None):
            return conversation
        conversation.assigned_to = assignee
        message = None
        if handling and assignee is not None:
            message = _add_message(
                conversation, sender=Sender.SYSTEM, text=f"{public_name(assignee)} joined the conversation."
            )
        elif handling:
            conversation.status = ConversationStatus.WAITING
            message = _add_message(
                conversation, sender=Sender.SYSTEM, text="A member of our team will be with you shortly."
            )
        conversation.save(update_fields=["assigned_to", "status", "updated_at"])
        _announce(conversation, message)
    return conversation


# --- unread -------------------------------------------------------------------------------------------


def conversation_mark_seen(*, organisation, conversation_id: int, message_id: Any):
    """Operators have read the conversation up to ``message_id`` (the last message the inbox showed):
    visitor messages after it stay unread. Never moves the mark back."""
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise InvalidInput("message must be the id of the last message shown.", details={"field": "message"})
    with transaction.atomic():
        conversation = _operated(organisation, conversation_id, open_only=False)
        seen: datetime | None = (
            Message.objects.for_org(organisation)
            .filter(conversation=conversation, pk=message_id)
            .values_list("created_at", flat=True)
            .first()
        )
        if seen is None:
            raise NotFound("No such message in this conversation.")
        if conversation.operator_seen_at is None or seen > conversation.operator_seen_at:
            conversation.operator_seen_at = seen
            conversation.save(update_fields=["operator_seen_at", "updated_at"])
            broadcast(
                group=org_group(organisation.pk, "inbox"),
                event_type="cs.conversation",
                payload=conversation_payload(conversation),
            )
    return conversation
