"""What one answered visitor message costs the server: SQL statements and channel-layer group sends.

The work of one ``message`` frame as the widget's socket does it (``consumers.ChatConsumer``):
the message stored, its payload, the answer with the settings the socket read for the frame, the answers'
payloads. The bounds are today's counts (``bench/chat_profile.py`` measures the same path with CPU time):
a change that adds a statement or a send to every chat message fails here. One trained model (``bot_org``).
"""

import asyncio
import operator

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import generations
from core.consumers import forward_batch
from core.realtime import org_group
from customer_service import services
from customer_service.models import AnswerSource, BotSettings
from customer_service.services import writes
from tests.customer_service.conftest import PARKING, banking_rows

PIN_ANSWER = "You can change your PIN at any of our ATMs: insert your card and choose 'Change PIN'."
HOURS = (
    "Our branches are open Monday to Friday from 9am to 5pm, and on Saturday mornings from 9am to noon. "
    "They are closed on Sundays and public holidays."
)
ARTICLE_QUESTION = "What time do your branches open on Saturday?"

POSTGRES = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
IN_REDIS = pytest.mark.skipif(not generations.in_redis(), reason="Redis calls counted (REDIS_URL)")

# Statements per answered message inside the test's transaction: the message stored (one statement on
# PostgreSQL: ``services.writes``), the conversation re-read, the quota, the active intent model, the
# template; an article answer adds the knowledge base's fingerprint query (the vectors' and the BM25's key),
# the passages and the article's title; the reply written (one statement) and metered.
TEMPLATE_STATEMENTS = 10
ARTICLE_STATEMENTS = 14
# Where the writes are transactions (SQLite, the embedded default; here with ``writes.ONE_STATEMENT`` off),
# each is six statements instead of one (an atomic block is a SAVEPOINT and a RELEASE inside the test's
# transaction, where a server has BEGIN and COMMIT): the lock, the duplicate check or the question's
# intent, the insert, the conversation touched.
IN_TRANSACTIONS = 10
GROUP_SENDS = 4  # two announcements (the visitor's message, the bot's answer), each to the inbox and the chat
LAYER_CALLS = [2, 2]  # each announcement's two groups in one call of the layer (``group_send_many``)


@pytest.fixture
def answering(bot_org, monkeypatch, django_capture_on_commit_callbacks):
    """A bot with a template and two articles, and ``answer(text)``: the frame's work on a new conversation,
    returning (the answer's source, the SQL statements, the group sends, the conversation)."""
    organisation, _owner, _version = bot_org
    services.template_save(organisation=organisation, intent="change_pin", body=PIN_ANSWER)
    services.article_save(organisation=organisation, title="Opening hours", body=HOURS)
    services.article_save(organisation=organisation, title="Parking", body=PARKING)
    services.bot_settings_for(organisation=organisation)
    bot = BotSettings.all_tenants.select_related("organisation").get(
        organisation=organisation
    )  # as the socket
    layer = get_channel_layer()
    sends: list[str] = []  # the groups sent to
    calls: list[int] = []  # the layer's calls, each with its number of groups
    real_many = layer.group_send_many  # the Redis layer's group_send goes through it too

    async def counted(items):
        sends.extend(group for group, _message, _exclude in items)
        calls.append(len(items))
        return await real_many(items)

    monkeypatch.setattr(layer, "group_send_many", counted)

    def answer(text: str, conversation=None):
        if conversation is None:
            conversation, _token, _greeting = services.conversation_start(bot=bot)
        sends.clear()
        calls.clear()
        with django_capture_on_commit_callbacks(execute=True), CaptureQueriesContext(connection) as queries:
            stored, bot_has_it = services.visitor_message_store(
                conversation=conversation, text=text, client_id="c1"
            )
            services.message_payload(stored)
            assert bot_has_it
            replies = services.visitor_message_answer(conversation=conversation, message=stored, bot=bot)
            [services.message_payload(reply) for reply in replies]
        return replies[0].source, len(queries.captured_queries), len(sends), conversation

    answer.calls = calls  # type: ignore[attr-defined]
    return organisation, answer


def _template_question() -> str:
    return next(t for t, label in banking_rows("test_slice.csv") if label == "change_pin")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "one_statement",
    [pytest.param(True, marks=pytest.mark.skipif(not POSTGRES, reason="one statement on PostgreSQL")), False],
    ids=["one-statement", "transactions"],
)
def test_template_and_article_answers_keep_to_their_sql_statements(answering, one_statement, monkeypatch):
    _organisation, answer = answering
    monkeypatch.setattr(writes, "ONE_STATEMENT", one_statement)
    assert writes.one_statement() is one_statement
    answer(_template_question())  # the model loaded, the plan read: what every later message finds
    answer(ARTICLE_QUESTION)
    source, statements, _sends, _ = answer(_template_question())
    assert source == AnswerSource.TEMPLATE
    more = 0 if one_statement else IN_TRANSACTIONS
    same = operator.eq if POSTGRES else operator.le  # SQLite's counts: at most these (no FOR UPDATE there)
    assert same(statements, TEMPLATE_STATEMENTS + more), f"a template answer took {statements} statements"
    source, statements, _sends, _ = answer(ARTICLE_QUESTION)
    assert source == AnswerSource.ARTICLE
    assert same(statements, ARTICLE_STATEMENTS + more), f"an article answer took {statements} statements"


async def _drain(layer, channel: str, quiet_s: float = 0.5) -> list[dict]:
    received = []
    while True:
        try:
            received.append(await asyncio.wait_for(layer.receive(channel), timeout=quiet_s))
        except TimeoutError:
            return received


def _events(messages: list[dict]) -> list[str]:
    """The event types a socket forwards from these channel-layer messages, in order."""
    out: list[str] = []
    for message in messages:
        out += (
            [e["event"] for e in message["events"]]
            if message["type"] == "event.batch"
            else [message["event"]]
        )
    return out


@pytest.mark.django_db
def test_an_answered_message_is_four_group_sends_in_two_calls_carrying_the_same_events(answering):
    organisation, answer = answering
    answer(_template_question())
    layer = get_channel_layer()
    bot = services.bot_settings_for(organisation=organisation)
    conversation, _token, _greeting = services.conversation_start(bot=bot)
    inbox, chat = org_group(organisation.pk, "inbox"), services.conversation_group(conversation)
    inbox_channel, chat_channel = async_to_sync(layer.new_channel)(), async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(inbox, inbox_channel)
    async_to_sync(layer.group_add)(chat, chat_channel)
    try:
        source, _statements, sends, _ = answer(_template_question(), conversation)
        assert source == AnswerSource.TEMPLATE
        assert sends == GROUP_SENDS and answer.calls == LAYER_CALLS
        inbox_events = _events(async_to_sync(_drain)(layer, inbox_channel))
        chat_events = _events(async_to_sync(_drain)(layer, chat_channel))
    finally:
        async_to_sync(layer.group_discard)(inbox, inbox_channel)
        async_to_sync(layer.group_discard)(chat, chat_channel)
    # what one broadcast per event delivered before: the same events, in the same order; the widget is not
    # told the conversation's status again where neither message changed it
    assert inbox_events == ["cs.conversation", "cs.message", "cs.conversation", "cs.message"]
    assert chat_events == ["cs.message", "cs.message"]


def test_a_batch_reaches_the_socket_as_the_events_one_by_one():
    forwarded: list[dict] = []

    class Consumer:
        async def event_forward(self, message):
            forwarded.append(message)

    events = [{"event": "cs.message", "data": {"id": 1}}, {"event": "cs.status", "data": {"status": "bot"}}]
    async_to_sync(forward_batch)(Consumer(), {"type": "event.batch", "events": events})
    assert forwarded == [{"type": "event.forward", **event} for event in events]


@pytest.mark.django_db
@pytest.mark.parametrize("int8_queries", [True, False], ids=["int8-queries", "float-queries-only"])
def test_the_intent_models_pass_is_lent_to_the_knowledge_base(answering, monkeypatch, settings, int8_queries):
    """Served in float on the frozen base encoder, the intent model's vector of the question is the one the
    knowledge base would compute: it is searched with it, to the same passages, and the base encoder is not
    run again. Served in int8 (what the gate gives on CPU), its vector is the row int8 copy's: lent too where
    ``VECTOR_INT8_QUERIES`` allows (the same article, no base pass), else the base encoder embeds the question
    in float."""
    from core.ml.embedder import BaseEmbedder
    from core.registry.models import ModelVersion
    from core.registry.services.common import active_version

    settings.VECTOR_INT8_QUERIES = int8_queries
    organisation, answer = answering
    version = active_version(organisation, services.APP, services.INTENT_TASK)
    bot = services.bot_settings_for(organisation=organisation)
    base_calls: list[int] = []
    real_embed = BaseEmbedder.embed
    monkeypatch.setattr(
        BaseEmbedder, "embed", lambda self, texts: base_calls.append(1) or real_embed(self, texts)
    )
    decisions = []
    for quantized, base_passes in ((True, 0 if int8_queries else 1), (False, 0)):
        ModelVersion.all_tenants.filter(pk=version.pk).update(quantized=quantized)
        services.decide(organisation=organisation, bot=bot, text=ARTICLE_QUESTION)  # loaded, warm
        base_calls.clear()
        decision = services.decide(organisation=organisation, bot=bot, text=ARTICLE_QUESTION)
        assert decision.source == AnswerSource.ARTICLE
        assert len(base_calls) == base_passes
        assert decision == services.decide(organisation=organisation, bot=bot, text=ARTICLE_QUESTION)
        decisions.append(decision)
    hits = services.kb_search(organisation=organisation, query=ARTICLE_QUESTION, k=3)
    assert {d.article_id for d in decisions} == {hits[0].article_id}
    # an organisation with an embedding model of its own for the knowledge base: its vectors are that
    # model's, never the intent model's
    from core import vectors
    from core.registry import services as registry
    from core.registry.models import VersionStatus

    version.refresh_from_db()
    predictor = registry.predictor_for(version=version)
    embedded = registry.version_embed(version=version, texts=[ARTICLE_QUESTION])
    asked = {"organisation": organisation, "app": services.APP, "task": services.RETRIEVAL_TASK}
    reuse = {**asked, "texts": [ARTICLE_QUESTION], "predictor": predictor, "vectors": embedded.numpy()}
    assert vectors.embedding_reuse(**reuse) is not None
    ModelVersion.all_tenants.create(
        **asked, version=1, kind="embedding", status=VersionStatus.ACTIVE, method="contrastive"
    )
    assert vectors.current_model(**asked).startswith("version:")
    assert vectors.embedding_reuse(**reuse) is None


@IN_REDIS
@pytest.mark.django_db(transaction=True)
def test_an_answers_state_tokens_come_with_the_quotas_reservation(make_org):
    """Outside a transaction, as a server answers: the answer's Redis calls are the quota's reservation,
    which reads the answering state's generation tokens too (no call of their own), the knowledge base's
    (this organisation has no intent model: the question goes to its articles) and the settlement."""
    from tests.redis_commands import redis_commands

    organisation, _owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    conversation, _token, _greeting = services.conversation_start(bot=bot)
    calls = []
    for text in ("Where is my parcel?", "Is anyone there?"):  # the first loads the state, the second is warm
        stored, _answers = services.visitor_message_store(conversation=conversation, text=text)
        with redis_commands() as commands:
            services.visitor_message_answer(conversation=conversation, message=stored, bot=bot)
        calls.append(commands)
        conversation.refresh_from_db()
        conversation.status = "bot"
        conversation.save(update_fields=["status"])
    assert calls[1] == ["EVALSHA", "MGET", "EVALSHA"], calls


@IN_REDIS
@pytest.mark.django_db(transaction=True)
def test_a_frames_admission_is_one_redis_call_that_sees_new_settings(make_org):
    """A widget frame's admission (``widget_admit``): the visitor's count reads the bot settings' generation
    tokens in the same Redis call, and a change to the settings is seen by the next frame."""
    from core.errors import InvalidInput
    from tests.redis_commands import redis_commands

    organisation, _owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    known = services.bot_for_widget(widget_key=bot.widget_key, origin=None)  # as the socket connects

    def admit():
        return services.widget_admit(
            widget_key=bot.widget_key,
            origin="https://shop.example.com",
            host="trellis.example.com",
            known=known,
            client="10.0.0.1",
            kind="message",
        )

    admit()  # the settings cached
    with redis_commands() as commands:
        again = admit()
    assert again.pk == bot.pk and commands == ["EVALSHA"], commands
    services.bot_settings_update(organisation=organisation, allowed_origins=["https://other.example.com"])
    with pytest.raises(InvalidInput, match="may not use this chat widget"):
        admit()
