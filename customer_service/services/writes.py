"""The chat's two hot writes as one statement each on PostgreSQL: a visitor's message stored, and the bot's
answer given.

Each was a transaction of six round trips (``BEGIN``, the conversation's row locked, a read or an update, the
message inserted, the conversation's time updated, ``COMMIT``), and a chat exchange runs both: twelve of the
thirteen statements an answer cost, each a wake-up of the answering thread and of a PostgreSQL backend on a
2-core machine (BENCHMARKS.md section 14). Here each is a single statement whose ``WITH`` queries do the same
in the same order: the conversation's row locked (``FOR UPDATE``: the latest version once a concurrent
writer commits), the checks made on that row, the message inserted only where they hold, the conversation's
time set only where it was. A single statement commits on its own (autocommit), as the transaction did.

The rules stay in ``conversations.visitor_message_store`` and ``answering._bot_reply``; these functions
only tell them what the row said and what was written. SQLite (the embedded default) has no data-modifying
``WITH`` queries: there, and where ``ONE_STATEMENT`` is off (tests run both ways), the callers run their
transactions.
"""

from __future__ import annotations

import functools

from django.db import connection
from django.utils import timezone

from core import prepared, statements
from customer_service.models import Conversation, ConversationStatus, Message

ONE_STATEMENT = True


def one_statement() -> bool:
    """Whether the hot writes run as one statement each here (PostgreSQL, unless turned off)."""
    return ONE_STATEMENT and connection.vendor == "postgresql"


def _conversation_cte() -> str:
    table, pk = statements.table(Conversation), statements.column(Conversation, "pk")
    select = statements.select_list(Conversation, table)
    return f"c AS (SELECT {select} FROM {table} WHERE {table}.{pk} = %s FOR UPDATE)"  # noqa: S608 - metadata


def _touch_cte() -> str:
    """The conversation's time set where the message was inserted (``i``), as ``_add_message`` sets it."""
    table, pk = statements.table(Conversation), statements.column(Conversation, "pk")
    last, updated = (statements.column(Conversation, n) for n in ("last_message_at", "updated_at"))
    return (
        f"u AS (UPDATE {table} SET {last} = %s, {updated} = %s FROM i"  # noqa: S608 - metadata
        f" WHERE {table}.{pk} = %s RETURNING {table}.{pk})"
    )


@functools.cache
def _store_sql(vendor: str) -> str:
    message, conversation = statements.table(Message), "c"
    columns, marks = statements.insert_select(Message, vendor)
    pk, status = statements.column(Message, "pk"), statements.column(Conversation, "status")
    of, client_id = statements.column(Message, "conversation"), statements.column(Message, "client_id")
    return (
        f"WITH {_conversation_cte()}, "  # noqa: S608 - names from model metadata
        f"e AS (SELECT {statements.select_list(Message, message)} FROM {message}"
        f" WHERE {message}.{of} = %s AND {message}.{client_id} = %s"
        f" AND {message}.{client_id} <> '' LIMIT 1), "
        f"i AS (INSERT INTO {message} ({columns}) SELECT {marks} FROM {conversation}"
        f" WHERE {conversation}.{status} <> %s AND NOT EXISTS (SELECT 1 FROM e)"
        f" ON CONFLICT DO NOTHING RETURNING {message}.{pk}), "
        f"{_touch_cte()} "
        f"SELECT {statements.select_list(Conversation, 'c')}, {statements.select_list(Message, 'e')}, i.{pk}"
        " FROM c LEFT JOIN e ON TRUE LEFT JOIN i ON TRUE"
    )


def message_store(message: Message) -> tuple[Conversation | None, Message | None, Message | None]:
    """Visitor ``message`` (unsaved, its conversation set) stored where its conversation is not closed and
    holds no message of its ``client_id``: ``(conversation, earlier, message)``: the conversation's row as
    locked (None: no such conversation), the message of the same ``client_id`` already there, if any, and
    ``message`` if it was stored (the conversation's times set, as ``_add_message`` sets them). Neither
    stored nor an earlier one for an open conversation: a copy of the frame stored it meanwhile (read it by
    its ``client_id``)."""
    values = statements.insert_values(message)
    pk, now = message.conversation_id, timezone.now()
    params = [pk, pk, message.client_id, *values, ConversationStatus.CLOSED, message.created_at, now, pk]
    rows = prepared.fetch_all(_store_sql(connection.vendor), params)
    if not rows:
        return None, None, None
    current, rest = _locked(rows[0])
    earlier, stored = rest[:-1], rest[-1]
    found = statements.instance(Message, earlier) if earlier[0] is not None else None
    return current, found, _stored(current, message, stored, now)


def _locked(row: tuple) -> tuple[Conversation, tuple]:
    """A statement's row: the conversation as locked (its columns first), and the rest."""
    n = len(Conversation._meta.concrete_fields)
    return statements.instance(Conversation, row[:n]), row[n:]


def _stored(conversation: Conversation, message: Message, pk, now) -> Message | None:
    if pk is None:
        return None
    conversation.last_message_at, conversation.updated_at = message.created_at, now
    message.conversation = conversation
    return statements.stored(message, pk)


@functools.cache
def _reply_sql(vendor: str, label: bool) -> str:
    message = statements.table(Message)
    columns, marks = statements.insert_select(Message, vendor)
    pk, status = statements.column(Message, "pk"), statements.column(Conversation, "status")
    intent, confidence = statements.column(Message, "intent"), statements.column(Message, "confidence")
    labelled = (
        f"m AS (UPDATE {message} SET {intent} = %s, {confidence} = %s"  # noqa: S608 - metadata
        f" WHERE {message}.{pk} = %s RETURNING {message}.{pk}), "
        if label
        else ""
    )
    return (
        f"WITH {_conversation_cte()}, {labelled}"  # noqa: S608 - names from model metadata
        f"i AS (INSERT INTO {message} ({columns}) SELECT {marks} FROM c"
        f" WHERE c.{status} = %s RETURNING {message}.{pk}), "
        f"{_touch_cte()} "
        f"SELECT {statements.select_list(Conversation, 'c')}, i.{pk} FROM c LEFT JOIN i ON TRUE"
    )


def reply_give(
    question: Message, reply: Message, intent: str, confidence: float | None
) -> tuple[Conversation | None, Message | None]:
    """The bot's ``reply`` (unsaved, its conversation set) to visitor message ``question`` stored where the
    bot still has the conversation, ``question`` labelled with the decision's ``intent`` and ``confidence``
    (where there is an intent) either way: ``(conversation, reply)``, the conversation's row as locked (None:
    no such conversation) and ``reply`` if it was stored (else an operator has the conversation by now)."""
    pk, values = reply.conversation_id, statements.insert_values(reply)
    now = timezone.now()
    label = [statements.prep(Message, "intent", intent), confidence, question.pk] if intent else []
    params = [pk, *label, *values, ConversationStatus.BOT, reply.created_at, now, pk]
    rows = prepared.fetch_all(_reply_sql(connection.vendor, bool(intent)), params)
    if not rows:
        return None, None
    current, (stored,) = _locked(rows[0])
    return current, _stored(current, reply, stored, now)
