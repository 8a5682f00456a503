"""What every chat message reads besides its conversation (the bot's settings, the active intent version, the
active answer templates) is cached per process behind ``core.generations``' tokens
(``customer_service.services.state``): a warm message reads none of those rows, and every change to them is
served from the next message after it commits."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import generations
from core.errors import InvalidInput, NotFound
from core.registry.services import promotion
from customer_service import services
from customer_service.models import AnswerSource, AnswerTemplate
from tests.customer_service.conftest import banking_rows, train_intent_model

pytestmark = [
    pytest.mark.skipif(not generations.in_redis(), reason="the tokens live in Redis (REDIS_URL)"),
    # writers' bumps are sent when their transaction commits; the cache is bypassed inside one
    pytest.mark.django_db(transaction=True),
]

CACHED = ("customer_service_botsettings", "registry_modelversion", "customer_service_answertemplate")
PIN_ANSWER = "You can change your PIN at any of our ATMs."
SITE = "https://shop.example"


def _pin_question() -> str:
    return next(t for t, label in banking_rows("test_slice.csv") if label == "change_pin")


class Widget:
    """One visitor's socket: the bot checked for each frame as ``ChatConsumer`` does (the first time by its
    key, then with the bot it knows), the message stored and answered."""

    def __init__(self, organisation):
        self.key = services.bot_settings_for(organisation=organisation).widget_key
        self.bot = None
        self.frames = 0

    def check(self, origin: str = SITE):
        self.bot = services.bot_for_widget(widget_key=self.key, origin=origin, host=None, known=self.bot)
        return self.bot

    def say(self, text: str):
        bot = self.check()
        conversation, _token, _greeting = services.conversation_start(bot=bot)  # a new chat: the bot has it
        self.frames += 1
        stored, _ = services.visitor_message_store(
            conversation=conversation, text=text, client_id=f"c{self.frames}"
        )
        return services.visitor_message_answer(conversation=conversation, message=stored, bot=bot)[-1]


def test_a_warm_message_reads_none_of_the_cached_rows(bot_org):
    organisation, _owner, version_id = bot_org
    services.template_save(organisation=organisation, intent="change_pin", body=PIN_ANSWER)
    widget = Widget(organisation)
    widget.say(_pin_question())  # loads the model (the socket's first frame reads its bot by key)
    widget.say(_pin_question())  # fills the caches
    with CaptureQueriesContext(connection) as queries:
        reply = widget.say(_pin_question())
    assert (reply.source, reply.text) == (AnswerSource.TEMPLATE, PIN_ANSWER)
    assert reply.model_version_id == version_id
    statements = [q["sql"] for q in queries.captured_queries]
    assert statements and not [s for s in statements if any(t in s for t in CACHED)], "\n".join(statements)


def test_every_change_is_served_by_the_next_message(bot_org):
    organisation, _owner, first_id = bot_org
    template = services.template_save(organisation=organisation, intent="change_pin", body=PIN_ANSWER)
    widget = Widget(organisation)
    assert widget.say(_pin_question()).text == PIN_ANSWER
    # the template's text, then the template switched off, on again, deleted
    services.template_save(organisation=organisation, intent="change_pin", body="Use any of our ATMs.")
    assert widget.say(_pin_question()).text == "Use any of our ATMs."
    services.template_save(organisation=organisation, intent="change_pin", body=PIN_ANSWER, active=False)
    assert widget.say(_pin_question()).source != AnswerSource.TEMPLATE
    AnswerTemplate.all_tenants.filter(pk=template.pk).update(active=True)  # no signal: the bump below
    services.template_save(organisation=organisation, intent="change_pin", body=PIN_ANSWER)
    assert widget.say(_pin_question()).source == AnswerSource.TEMPLATE
    services.template_delete(organisation=organisation, template_id=template.pk)
    assert widget.say(_pin_question()).source != AnswerSource.TEMPLATE
    services.template_save(organisation=organisation, intent="change_pin", body=PIN_ANSWER)
    # the bot's settings: a threshold above any confidence, then the one before
    before = services.bot_settings_for(organisation=organisation).intent_threshold
    services.bot_settings_update(organisation=organisation, intent_threshold=0.999)
    assert widget.say(_pin_question()).source != AnswerSource.TEMPLATE
    services.bot_settings_update(organisation=organisation, intent_threshold=before)
    assert widget.say(_pin_question()).source == AnswerSource.TEMPLATE
    # a new intent version promoted, then rolled back
    second_id = train_intent_model(organisation)
    promotion.model_promote(organisation=organisation, version_id=second_id, force=True)
    assert widget.say(_pin_question()).model_version_id == second_id
    promotion.model_rollback(organisation=organisation, app="customer_service", task="intent")
    assert widget.say(_pin_question()).model_version_id == first_id
    # the sites allowed to use the widget, and the key itself
    services.bot_settings_update(organisation=organisation, allowed_origins=["https://other.example"])
    with pytest.raises(InvalidInput):
        widget.check()
    assert widget.check(origin="https://other.example").pk == widget.bot.pk
    services.widget_key_rotate(organisation=organisation)
    with pytest.raises(NotFound):
        widget.check(origin="https://other.example")
