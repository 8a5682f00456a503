"""The chat's hot writes (``services.writes``): one statement each on PostgreSQL, the same rows and the same
answers as the transactions SQLite runs (``writes.ONE_STATEMENT`` off), for every branch of their rules."""

import threading
import time

import pytest
from django.conf import settings
from django.db import DataError, connection, connections, transaction

from core import statements
from core.errors import Conflict, NotFound
from customer_service import services
from customer_service.models import AnswerSource, Conversation, ConversationStatus, Message, Sender
from customer_service.services import writes
from customer_service.services.answering import Decision, _bot_reply

pytestmark = pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"),
    reason="one statement on PostgreSQL (elsewhere both ways are the transactions)",
)
BOTH = pytest.mark.parametrize("one_statement", [True, False], ids=["one-statement", "transactions"])
SKIPPED = ("id", "created_at", "updated_at", "public_id", "token_hash", "conversation_id", "last_message_at")


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def _kept(obj) -> dict:
    return {k: v for k, v in _fields(obj).items() if k not in SKIPPED}


def _exchange(bot, one_statement: bool, monkeypatch) -> dict:
    """Every branch of the two writes on a new conversation; what each returned and what the rows hold."""
    monkeypatch.setattr(writes, "ONE_STATEMENT", one_statement)
    assert writes.one_statement() is one_statement
    conversation, _token, _greeting = services.conversation_start(bot=bot)
    seen: dict = {}
    question, answers = services.visitor_message_store(
        conversation=conversation, text=" Hi  ", client_id="a1"
    )
    row = Message.all_tenants.get(pk=question.pk)
    assert _fields(question) == _fields(row)  # what the caller holds is what was stored
    current = Conversation.all_tenants.get(pk=conversation.pk)
    assert current.last_message_at == question.created_at and current.updated_at >= question.created_at
    seen["question"] = (_kept(row), answers)
    again, answers = services.visitor_message_store(conversation=conversation, text="other", client_id="a1")
    seen["again"] = (again.pk == question.pk, again.text, answers)
    decision = Decision(AnswerSource.TEMPLATE, "Here you go.", "", "change_pin", 0.93, None, None)
    [reply] = _bot_reply(conversation, question, decision, bot.__class__.all_tenants.get(pk=bot.pk))
    stored = Message.all_tenants.get(pk=reply.pk)
    assert _fields(reply) == _fields(stored) and reply.conversation.pk == conversation.pk
    current = Conversation.all_tenants.get(pk=conversation.pk)
    assert current.last_message_at == reply.created_at and current.updated_at >= reply.created_at
    assert _fields(reply.conversation) == _fields(current)  # the announced conversation is the row
    seen["reply"] = (_kept(stored), _kept(Message.all_tenants.get(pk=question.pk)))
    Conversation.all_tenants.filter(pk=conversation.pk).update(status=ConversationStatus.OPERATOR)
    later, _ = services.visitor_message_store(conversation=conversation, text="still there?", client_id="a2")
    late = Decision(AnswerSource.ARTICLE, "An article.", "", "opening_hours", 0.4, None, None)
    seen["after a takeover"] = _bot_reply(conversation, later, late, bot)
    seen["later labelled"] = _kept(Message.all_tenants.get(pk=later.pk))
    Conversation.all_tenants.filter(pk=conversation.pk).update(status=ConversationStatus.CLOSED)
    with pytest.raises(Conflict, match="closed"):
        services.visitor_message_store(conversation=conversation, text="hello?", client_id="a3")
    seen["messages"] = [
        (m.sender, m.text, m.client_id, m.intent)
        for m in Message.all_tenants.filter(conversation=conversation).order_by("pk")
    ]
    gone = Conversation(pk=conversation.pk + 10_000, organisation_id=conversation.organisation_id)
    with pytest.raises(NotFound):
        services.visitor_message_store(conversation=gone, text="anyone?")
    with pytest.raises(NotFound):
        _bot_reply(gone, later, decision, bot)
    return seen


@pytest.mark.django_db
def test_one_statement_writes_store_and_answer_as_the_transactions_do(make_org, monkeypatch):
    organisation, _owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    one = _exchange(bot, True, monkeypatch)
    assert one == _exchange(bot, False, monkeypatch)
    assert one["again"] == (True, "Hi", False)  # a copy of the frame: the stored message, not answered
    assert one["question"][1] is True and one["after a takeover"] == []
    assert one["reply"][0]["source"] == AnswerSource.TEMPLATE and one["reply"][0]["sender"] == Sender.BOT
    assert (one["reply"][1]["intent"], one["reply"][1]["confidence"]) == ("change_pin", 0.93)
    assert one["later labelled"]["intent"] == "opening_hours"  # labelled though the answer was dropped
    assert one["messages"] == [
        (Sender.BOT, bot.greeting, "", ""),
        (Sender.VISITOR, "Hi", "a1", "change_pin"),
        (Sender.BOT, "Here you go.", "", "change_pin"),
        (Sender.VISITOR, "still there?", "a2", "opening_hours"),
    ]


def _waiting_for_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
        row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


@BOTH
@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed-meanwhile"])
@pytest.mark.django_db(transaction=True)
def test_a_copy_of_a_frame_held_at_the_lock_returns_the_message_the_first_copy_stored(
    make_org, monkeypatch, one_statement, closed
):
    """The widget sends a frame again while the first copy's transaction holds the conversation: the
    second waits for the lock, then finds the message stored (the one-statement store's duplicate check
    read its snapshot from before the wait: the unique constraint and a read after it catch it), also
    where the conversation was closed before the second got the lock (the copy is not refused)."""
    monkeypatch.setattr(writes, "ONE_STATEMENT", one_statement)
    organisation, _owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    conversation, _token, _greeting = services.conversation_start(bot=bot)
    first_locked, release, done = threading.Event(), threading.Event(), {}

    def first() -> None:
        try:
            with transaction.atomic():
                statements.row_get(Conversation, lock=True, pk=conversation.pk)
                Message.all_tenants.create(
                    organisation=organisation,
                    conversation=conversation,
                    sender=Sender.VISITOR,
                    text="once",
                    client_id="dup",
                )
                if closed:
                    Conversation.all_tenants.filter(pk=conversation.pk).update(
                        status=ConversationStatus.CLOSED
                    )
                first_locked.set()
                release.wait(30)
        finally:
            connections.close_all()

    def second() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                done["pid"] = cursor.fetchone()[0]
            done["result"] = services.visitor_message_store(
                conversation=conversation, text="once", client_id="dup"
            )
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            done["error"] = exc
        finally:
            connections.close_all()

    holder = threading.Thread(target=first)
    holder.start()
    assert first_locked.wait(30)
    copy = threading.Thread(target=second)
    copy.start()
    deadline = time.monotonic() + 30
    while not ("pid" in done and _waiting_for_a_lock(done["pid"])) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _waiting_for_a_lock(done["pid"]), "the copy did not wait for the conversation's lock"
    release.set()
    holder.join(30)
    copy.join(30)
    assert "error" not in done, done.get("error")
    message, answers = done["result"]
    assert (message.text, message.client_id, answers) == ("once", "dup", False)
    assert Message.all_tenants.filter(conversation=conversation, client_id="dup").count() == 1
    assert message.pk == Message.all_tenants.get(conversation=conversation, client_id="dup").pk


@pytest.mark.django_db
def test_a_value_too_long_for_its_column_is_refused_as_an_insert_refuses_it(make_org):
    """The one-statement insert types its values without a string's length, so the column refuses what is
    too long for it (a cast to the column's own type would have cut it to fit)."""
    organisation, _owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    conversation, _token, _greeting = services.conversation_start(bot=bot)
    message = Message(
        organisation_id=organisation.pk,
        conversation=conversation,
        sender=Sender.VISITOR,
        text="hello",
        client_id="c" * 65,  # the column holds 64 (the service checks it first: this bypasses the check)
    )
    with pytest.raises(DataError, match="too long"), transaction.atomic():
        writes.message_store(message)
    assert not Message.all_tenants.filter(conversation=conversation, sender=Sender.VISITOR).exists()
