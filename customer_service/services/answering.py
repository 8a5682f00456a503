"""How the bot answers a visitor's message (``bot_answer``; ``decide`` is the rule, without writes):
1. an explicit request for a person, or a confident intent in ``HANDOFF_INTENTS`` -> hand-off;
2. the organisation's active intent model (``customer_service``/``intent``): a confident prediction
   (>= ``intent_threshold``) of an intent with an active answer template -> that template;
3. otherwise the knowledge base: the closest article passage by cosine (>= ``retrieval_threshold``);
4. otherwise hand-off to an operator (the conversation waits in the live inbox).
Each answered visitor message is one metered prediction; over the quota, the bot hands off instead of
answering, and the visitor's message is kept either way. ``answer_preview`` is the same rule for the API,
without a conversation.
"""

import logging
import re
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import QuotaExceeded
from core.registry import services as registry
from core.registry.services.common import active_version
from customer_service.models import (
    AnswerSource,
    AnswerTemplate,
    BotSettings,
    Conversation,
    ConversationStatus,
    Message,
    Sender,
)
from customer_service.services.bot import bot_settings_for
from customer_service.services.common import APP, INTENT_TASK
from customer_service.services.conversations import (
    _add_message,
    _announce,
    _clean_text,
    visitor_message_store,
)
from customer_service.services.knowledge import kb_search

log = logging.getLogger(__name__)


HUMAN_REQUEST = re.compile(
    r"\b(?:human|real person|live (?:agent|person)|representative"
    r"|(?:talk|speak|chat) (?:to|with) (?:a |an )?(?:person|human|agent|operator|someone|somebody))\b",
    re.IGNORECASE,
)
HANDOFF_INTENTS = ("contact_human_agent",)


def visitor_message(*, conversation: Conversation, text: Any) -> list[Message]:
    """Store the visitor's message; the bot answers it while the conversation is the bot's."""
    message, bot_has_it = visitor_message_store(conversation=conversation, text=text)
    if not bot_has_it:
        return [message]  # a person has it (or is about to): the bot stays quiet
    return [message, *bot_answer(conversation=conversation, message=message)]


def visitor_message_answer(*, conversation: Conversation, message: Message) -> list[Message]:
    """The bot's answer to a visitor message stored earlier (``visitor_message_store``), worked out apart
    from accepting it; nothing if a person has the conversation by now (an operator took over, or the
    answer to an earlier message handed off, or it was closed): the message waits for them in the inbox."""
    status = Conversation.all_tenants.filter(pk=conversation.pk).values_list("status", flat=True).first()
    if status != ConversationStatus.BOT:
        return []
    return bot_answer(conversation=conversation, message=message)


@dataclass(frozen=True)
class Decision:
    source: str
    text: str
    reason: str = ""
    intent: str = ""
    confidence: float | None = None
    article_id: int | None = None
    model_version_id: int | None = None


def decide(*, organisation, bot: BotSettings, text: str) -> Decision:
    """What the bot would answer to ``text`` (no writes, not metered): the rule in the module docstring."""
    if HUMAN_REQUEST.search(text):
        return Decision(AnswerSource.HANDOFF, bot.handoff_message, reason="The visitor asked for a person.")
    intent, confidence, version_id = "", None, None
    version = active_version(organisation, APP, INTENT_TASK)
    if version is not None and version.labels:
        prediction = registry.predictor_for(version=version).predict([text])[0]
        intent, confidence, version_id = (
            prediction.label,
            float(prediction.probabilities[prediction.label]),
            version.pk,
        )
        if intent in HANDOFF_INTENTS and confidence >= bot.intent_threshold:
            return Decision(
                AnswerSource.HANDOFF,
                bot.handoff_message,
                "The visitor asked for a person.",
                intent,
                confidence,
                model_version_id=version_id,
            )
        template = AnswerTemplate.objects.for_org(organisation).filter(intent=intent, active=True).first()
        if template is not None and confidence >= bot.intent_threshold:
            return Decision(AnswerSource.TEMPLATE, template.body, "", intent, confidence, None, version_id)
    hits = kb_search(organisation=organisation, query=text, k=1)
    if hits and hits[0].score >= bot.retrieval_threshold:
        hit = hits[0]
        answer = f"{hit.passage}\n\n(From: {hit.title}{' - ' + hit.url if hit.url else ''})"
        return Decision(AnswerSource.ARTICLE, answer, "", intent, confidence, hit.article_id, version_id)
    if version is None:
        reason = "No intent model is active and no article matches."
    elif confidence is not None and confidence < bot.intent_threshold:
        reason = f"Not sure: '{intent}' at {confidence:.2f} (threshold {bot.intent_threshold:.2f})."
    else:
        reason = f"No answer template for '{intent}' and no article matches."
    return Decision(AnswerSource.HANDOFF, bot.handoff_message, reason, intent, confidence, None, version_id)


def bot_answer(*, conversation: Conversation, message: Message) -> list[Message]:
    """Answer one visitor message (metered as one prediction) or hand the conversation to a person."""
    organisation = conversation.organisation
    bot = bot_settings_for(organisation=organisation)

    def answer() -> billing.Charge[list[Message]]:  # only an answer the bot worked out and gave is charged
        try:
            decision = decide(organisation=organisation, bot=bot, text=message.text)
        except Exception:  # noqa: BLE001 - a broken model must not leave the visitor unanswered
            log.exception("the bot could not answer message %s", message.pk)
            failed = Decision(AnswerSource.HANDOFF, bot.handoff_message, "The bot failed to answer.")
            return billing.Charge(_bot_reply(conversation, message, failed), quantity=0)
        replies = _bot_reply(conversation, message, decision)
        metadata = {"conversation": conversation.pk, "source": decision.source}
        return billing.Charge(replies, quantity=1 if replies else 0, metadata=metadata)

    try:
        return billing.metered(
            answer, organisation=organisation, meter=Meter.PREDICTIONS, metadata={"app": APP}
        )
    except QuotaExceeded:
        used_up = Decision(
            AnswerSource.HANDOFF, bot.handoff_message, "The plan's prediction quota is used up."
        )
        return _bot_reply(conversation, message, used_up)


def _bot_reply(conversation: Conversation, message: Message, decision: Decision) -> list[Message]:
    """Give the bot's decision, unless an operator took the conversation over while the bot thought."""
    with transaction.atomic():
        conversation = Conversation.all_tenants.select_for_update().get(pk=conversation.pk)
        if decision.intent:
            Message.all_tenants.filter(pk=message.pk).update(
                intent=decision.intent, confidence=decision.confidence
            )
        if conversation.status != ConversationStatus.BOT:  # an operator took over while the bot thought
            return []
        reply = _add_message(
            conversation,
            sender=Sender.BOT if decision.source != AnswerSource.HANDOFF else Sender.SYSTEM,
            text=decision.text,
            source=decision.source,
            intent=decision.intent,
            confidence=decision.confidence,
            article_id=decision.article_id,
            model_version_id=decision.model_version_id,
        )
        if decision.source == AnswerSource.HANDOFF:
            conversation.status = ConversationStatus.WAITING
            conversation.handoff_reason = decision.reason[:200]
            conversation.save(update_fields=["status", "handoff_reason", "updated_at"])
        _announce(conversation, reply)
    return [reply]


def answer_preview(*, organisation, text: Any, api_key=None, idempotency_key: str | None = None) -> Decision:
    """What the bot would answer, without a conversation (the API's ``answer``): metered like an answer."""
    text = _clean_text(text)
    bot = bot_settings_for(organisation=organisation)

    def answer() -> billing.Charge[Decision]:
        decision = decide(organisation=organisation, bot=bot, text=text)
        return billing.Charge(decision, metadata={"source": decision.source})

    return billing.metered(
        answer,
        organisation=organisation,
        meter=Meter.PREDICTIONS,
        api_key=api_key,
        idempotency_key=idempotency_key,
        metadata={"app": APP},
    )
