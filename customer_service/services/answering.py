"""How the bot answers a visitor's message (``bot_answer``; ``decide`` is the rule, without writes):
1. an explicit request for a person, or a confident intent in ``HANDOFF_INTENTS`` -> hand-off; a greeting,
   thanks or goodbye on its own -> a short answer (``smalltalk``: the tenant's greeting for a greeting);
2. the organisation's active intent model (``customer_service``/``intent``): a confident prediction (at or
   above the intent's threshold: its own in ``intent_thresholds``, else ``intent_threshold``) of an intent
   with an active answer template -> that template. The confidence is the top probability; with the
   tenant's ``out_of_scope_check``, the top probability capped by the model's ``in_scope`` (``core.ml.ood``,
   ``Prediction.confidence``), so a question unlike every training example is not answered from a template.
   Off by default: calibrated on held-out rows of the tenant's own training set, ``in_scope`` judged the
   demo's "where is my package, I want to track it" out of scope (Bitext's rows are templated), while on
   CLINC150 with a fine-tuned model it is what reaches 96.3% of in-scope questions answered right with 75%
   of out-of-scope ones handed on (BENCHMARKS.md section 17);
3. otherwise the knowledge base (``kb_search``: BM25 and cosine fused): the best passage whose cosine is at
   or above ``retrieval_threshold``; with ``grounded_answers`` on, an answer written from the top passages
   and citing them (``grounded``), or, when they do not answer it, "not in our articles" and a hand-off
   (a refused generation, or a missing or failing generator: the passage itself, as with the setting off);
4. otherwise, not sure: as the tenant chose (``uncertain_mode``), the bot offers its best guesses with an
   answer (at or above ``suggestion_floor``) as buttons (``suggestions``), or asks the visitor to rephrase
   (once: if its previous word was already that, it hands off), or hands off;
5. otherwise hand-off to an operator (``handoff``: the conversation waits in the live inbox, and the visitor
   is told what happens next, asked for an e-mail address when nobody can answer now).
Each answered visitor message is one metered prediction; over the quota, the bot hands off instead of
answering, and the visitor's message is kept either way. ``answer_preview`` is the same rule for the API,
without a conversation. While a hand-off waits for the visitor's e-mail address, the bot reads their
messages for it (``handoff.email_reply_locked``), unmetered; a message with no ``@`` in it is a question,
not a try at the address: the bot answers it when it is sure (a template, an article, a grounded answer;
metered as any answer) and the hand-off still waits for the address, and otherwise asks for the address.
"""

import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction

from core import statements, vectors
from core.billing import services as billing
from core.billing.models import Meter
from core.billing.streamed import metered_streamed
from core.errors import NotFound, QuotaExceeded
from core.ml.errors import MLError
from core.registry import services as registry
from customer_service.models import (
    AnswerSource,
    BotSettings,
    Conversation,
    ConversationStatus,
    Message,
    Sender,
    UncertainMode,
)
from customer_service.services import writes
from customer_service.services.bot import bot_settings_for, intent_threshold_for
from customer_service.services.common import APP, RETRIEVAL_TASK
from customer_service.services.conversations import (
    _add_message,
    _announce,
    _clean_text,
    email_wanted,
    locked,
    new_message,
    visitor_message_store,
)
from customer_service.services.grounded import NOT_FOUND, grounded_answer
from customer_service.services.handoff import email_reply_locked, hand_off_locked
from customer_service.services.knowledge import Hit, kb_search
from customer_service.services.smalltalk import small_talk
from customer_service.services.state import answering_state, answering_state_cache
from customer_service.services.suggestions import suggestion_options, suggestions_text

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
    return [message, *visitor_message_answer(conversation=conversation, message=message)]


def visitor_message_answer(
    *, conversation: Conversation, message: Message, bot: BotSettings | None = None
) -> list[Message]:
    """The bot's answer to a visitor message stored earlier (``visitor_message_store``), worked out apart
    from accepting it; nothing if a person has the conversation by now (an operator took over, or the
    answer to an earlier message handed off, or it was closed): the message waits for them in the inbox.
    A hand-off that asked for the visitor's e-mail address reads the message for it. ``bot``: the
    organisation's settings when the caller has them in hand (the widget's socket reads them for every
    frame), else they are read here."""
    current = statements.row_get(Conversation, pk=conversation.pk)
    if current is None:
        return []
    if email_wanted(current):
        if "@" not in message.text:  # a question meanwhile, not a try at the address: answer it if sure
            return bot_answer(conversation=conversation, message=message, waiting_for_email=True, bot=bot)
        with transaction.atomic():
            current = locked(conversation.pk)
            return [email_reply_locked(current, text=message.text)] if email_wanted(current) else []
    if current.status != ConversationStatus.BOT:
        return []
    return bot_answer(conversation=conversation, message=message, bot=bot)


@dataclass(frozen=True)
class Decision:
    source: str
    text: str
    reason: str = ""
    intent: str = ""
    confidence: float | None = None
    article_id: int | None = None
    model_version_id: int | None = None
    suggestions: tuple[dict[str, Any], ...] = ()  # on ``suggestions``: [{"intent", "label", "probability"}]
    uncertain: bool = False  # a hand-off because the bot was not sure (not asked, not failed)
    citations: tuple[dict[str, Any], ...] = ()  # on ``grounded``: [{"article", "title", "url"}]
    preface: str = ""  # on a hand-off: what the bot says first (a grounded answer's "not in our articles")


def decide(*, organisation, bot: BotSettings, text: str, asked_to_rephrase: bool = False) -> Decision:
    """What the bot would answer to ``text`` (no writes, not metered): the rule in the module docstring.
    ``asked_to_rephrase``: the bot's previous word in the conversation asked for other words."""
    decision = _decide(organisation=organisation, bot=bot, text=text)
    if not decision.uncertain or bot.uncertain_mode == UncertainMode.HANDOFF:
        return decision
    if bot.uncertain_mode == UncertainMode.SUGGEST and decision.suggestions:
        return replace(
            decision, source=AnswerSource.SUGGESTIONS, text=suggestions_text(list(decision.suggestions))
        )
    if bot.uncertain_mode == UncertainMode.REPHRASE and not asked_to_rephrase:
        return replace(decision, source=AnswerSource.REPHRASE, text=bot.rephrase_message)
    return decision


def _decide(*, organisation, bot: BotSettings, text: str) -> Decision:
    if HUMAN_REQUEST.search(text):
        return Decision(AnswerSource.HANDOFF, bot.handoff_message, reason="The visitor asked for a person.")
    talk = small_talk(text, greeting=bot.greeting)
    if talk is not None:
        return Decision(AnswerSource.SMALLTALK, talk.text, reason=f"Small talk: {talk.kind}.")
    intent, confidence, version_id = "", None, None
    in_scope: float | None = None
    probabilities: dict[str, float] = {}
    state = answering_state(organisation=organisation)  # cached behind generation tokens
    version = state.version
    predictor, embeddings = None, None  # kept for the knowledge base: its search may reuse the pass
    if version is not None and version.labels:
        predictor = registry.predictor_for(version=version)
        # the encoder pass, shared with other visitors' at the same moment where the version serves float
        embeddings = registry.version_embed(version=version, texts=[text])
        # what predictor.predict([text]) gives; its in-scope score only where the rule reads it
        prediction = predictor.predictions(embeddings, [text], in_scope=bot.out_of_scope_check)[0]
        intent, confidence, version_id = (
            prediction.label,
            float(prediction.probabilities[prediction.label]),
            version.pk,
        )
        if bot.out_of_scope_check:
            confidence = float(prediction.confidence)  # capped by in_scope where the version has it
            in_scope = prediction.in_scope
        probabilities = dict(prediction.probabilities)
        threshold = intent_threshold_for(bot=bot, intent=intent)
        if intent in HANDOFF_INTENTS and confidence >= threshold:
            return Decision(
                AnswerSource.HANDOFF,
                bot.handoff_message,
                "The visitor asked for a person.",
                intent,
                confidence,
                model_version_id=version_id,
            )
        template = state.templates.get(intent)
        if template is not None and confidence >= threshold:
            return Decision(AnswerSource.TEMPLATE, template, "", intent, confidence, None, version_id)
    embedded = (
        vectors.embedding_reuse(
            organisation=organisation,
            app=APP,
            task=RETRIEVAL_TASK,
            texts=[text],
            predictor=predictor,
            vectors=embeddings.numpy(),
        )
        if predictor is not None and embeddings is not None
        else None
    )
    hits = kb_search(organisation=organisation, query=text, k=KB_HITS, embedded=embedded)
    top = next((hit for hit in hits if hit.score >= bot.retrieval_threshold), None)
    if top is not None:
        answer = f"{top.passage}\n\n(From: {top.title}{' - ' + top.url if top.url else ''})"
        article = Decision(AnswerSource.ARTICLE, answer, "", intent, confidence, top.article_id, version_id)
        if not bot.grounded_answers:
            return article
        return _grounded(article, text, [top, *(hit for hit in hits if hit is not top)], bot)
    if version is None:
        reason = "No intent model is active and no article matches."
    elif confidence is not None and confidence < intent_threshold_for(bot=bot, intent=intent):
        threshold = intent_threshold_for(bot=bot, intent=intent)
        reason = f"Not sure: '{intent}' at {confidence:.2f} (threshold {threshold:.2f})."
        if in_scope is not None and in_scope < probabilities[intent]:  # the cap decided
            reason = (
                f"Unlike the questions the model was trained on: in scope {in_scope:.2f} (threshold "
                f"{threshold:.2f}); its best guess '{intent}' at {probabilities[intent]:.2f}."
            )
    else:
        reason = f"No answer template for '{intent}' and no article matches."
    options = (
        suggestion_options(
            organisation=organisation,
            probabilities=probabilities,
            floor=bot.suggestion_floor,
            exclude=HANDOFF_INTENTS,
        )
        if probabilities and bot.uncertain_mode == UncertainMode.SUGGEST
        else []
    )
    return Decision(
        AnswerSource.HANDOFF,
        bot.handoff_message,
        reason,
        intent,
        confidence,
        None,
        version_id,
        suggestions=tuple(options),
        uncertain=True,
    )


KB_HITS = 3  # articles the knowledge base gives: the best one above the threshold answers


def _grounded(article: Decision, text: str, hits: list[Hit], bot: BotSettings) -> Decision:
    """The grounded answer from ``hits`` (the one above the threshold first), a hand-off saying the articles
    do not answer it, or ``article`` (the passage itself): when the check refused the generation without
    grounds to decline (``grounded.grounded_answer``), or the generator is missing or fails."""
    try:
        result = grounded_answer(question=text, hits=hits)
    except Exception as exc:  # noqa: BLE001 - a missing or broken generator: answer as without it
        level = logging.WARNING if isinstance(exc, MLError) else logging.ERROR
        log.log(level, "grounded answer failed, answering with the article: %s", exc, exc_info=True)
        return article
    if result.outcome == "article":
        return article
    if result.outcome == "decline":
        return replace(
            article,
            source=AnswerSource.HANDOFF,
            text=bot.handoff_message,
            reason=f"Not in the articles: {result.reason}"[:200],
            article_id=None,
            preface=NOT_FOUND,
        )
    first = result.citations[0]["article"] if result.citations else article.article_id
    return replace(
        article, source=AnswerSource.GROUNDED, text=result.text, article_id=first, citations=result.citations
    )


def _asked_to_rephrase(conversation: Conversation, before: Message) -> bool:
    """Whether the bot's last word before ``before`` asked the visitor to rephrase."""
    last = (
        Message.all_tenants.filter(conversation=conversation, pk__lt=before.pk)
        .exclude(sender=Sender.VISITOR)
        .order_by("-pk")
        .values_list("source", flat=True)
        .first()
    )
    return last == AnswerSource.REPHRASE


# The bot's own answers: while a hand-off waits for an e-mail address, only these are given.
ANSWERS = (AnswerSource.TEMPLATE, AnswerSource.ARTICLE, AnswerSource.GROUNDED)


def bot_answer(
    *,
    conversation: Conversation,
    message: Message,
    waiting_for_email: bool = False,
    bot: BotSettings | None = None,
) -> list[Message]:
    """Answer one visitor message (metered as one prediction) or hand the conversation to a person.
    ``waiting_for_email``: the conversation waits for a person and for the visitor's e-mail address (nobody
    was online); a sure answer is given and charged, anything else asks for the address again, uncharged.
    ``bot``: the organisation's settings if the caller has them (else read here)."""
    organisation = conversation.organisation
    settings = (
        bot
        if bot is not None and bot.organisation_id == organisation.pk
        else bot_settings_for(organisation=organisation)
    )

    def answer() -> billing.Charge[list[Message]]:  # only an answer the bot worked out and gave is charged
        try:
            decision = decide(
                organisation=organisation,
                bot=settings,
                text=message.text,
                # read only where the rule reads it: a bot that asks to rephrase
                asked_to_rephrase=settings.uncertain_mode == UncertainMode.REPHRASE
                and _asked_to_rephrase(conversation, message),
            )
        except Exception:  # noqa: BLE001 - a broken model must not leave the visitor unanswered
            log.exception("the bot could not answer message %s", message.pk)
            failed = Decision(AnswerSource.HANDOFF, settings.handoff_message, "The bot failed to answer.")
            replies = _bot_reply(conversation, message, failed, settings, waiting_for_email)
            return billing.Charge(replies, quantity=0)
        replies = _bot_reply(conversation, message, decision, settings, waiting_for_email)
        answered = bool(replies) and (not waiting_for_email or decision.source in ANSWERS)
        metadata = {"conversation": conversation.pk, "source": decision.source}
        return billing.Charge(replies, quantity=1 if answered else 0, metadata=metadata)

    try:  # with Redis, through the ledger stream: no transaction of its own after the reply's; the quota's
        # reservation reads the answering state's generation tokens in the same call
        return metered_streamed(
            answer,
            organisation=organisation,
            meter=Meter.PREDICTIONS,
            metadata={"app": APP},
            prefetch=(answering_state_cache(),),
        )
    except QuotaExceeded:
        used_up = Decision(
            AnswerSource.HANDOFF, settings.handoff_message, "The plan's prediction quota is used up."
        )
        return _bot_reply(conversation, message, used_up, settings, waiting_for_email)


def _bot_reply(
    conversation: Conversation,
    message: Message,
    decision: Decision,
    bot: BotSettings,
    waiting_for_email: bool = False,
) -> list[Message]:
    """Give the bot's decision, unless an operator took the conversation over while the bot thought. While a
    hand-off waits for the visitor's e-mail address, only a sure answer is given (the conversation keeps
    waiting); otherwise the bot asks for the address again."""
    if not waiting_for_email and decision.source != AnswerSource.HANDOFF and writes.one_statement():
        return _bot_reply_one(conversation, message, decision)
    with transaction.atomic():
        organisation = conversation.organisation  # in hand: not read again through the locked row
        conversation = locked(conversation.pk)
        conversation.organisation = organisation
        if decision.intent:
            statements.row_update(Message, message.pk, intent=decision.intent, confidence=decision.confidence)
        if waiting_for_email:
            if not email_wanted(conversation):  # an operator took over, or the address came meanwhile
                return []
            if decision.source not in ANSWERS:
                return [email_reply_locked(conversation, text=message.text)]
        elif conversation.status != ConversationStatus.BOT:  # an operator took over while the bot thought
            return []
        if decision.source == AnswerSource.HANDOFF:
            said = []
            if decision.preface:
                said.append(_add_message(conversation, sender=Sender.BOT, text=decision.preface))
                _announce(conversation, said[0], status=False)  # the hand-off's announcement has it
            reply = hand_off_locked(
                conversation,
                bot=bot,
                reason=decision.reason,
                intent=decision.intent,
                confidence=decision.confidence,
                model_version_id=decision.model_version_id,
            )
            return [*said, reply]
        reply = _add_message(conversation, **_reply_fields(decision, message))
        _announce(conversation, reply, status=False)  # the bot answered: the status stays the bot's
    return [reply]


def _bot_reply_one(conversation: Conversation, message: Message, decision: Decision) -> list[Message]:
    """``_bot_reply``'s transaction for an answer (not a hand-off, not while waiting for an address) as one
    statement (``writes``), the same rules."""
    reply = new_message(conversation, **_reply_fields(decision, message))
    current, given = writes.reply_give(message, reply, decision.intent, decision.confidence)
    if current is None:
        raise NotFound("No such conversation.")
    if given is None:  # an operator took over while the bot thought
        return []
    current.organisation = conversation.organisation  # in hand: not read again through the row
    _announce(current, given, status=False)  # the bot answered: the status stays the bot's
    return [given]


def _reply_fields(decision: Decision, message: Message) -> dict[str, Any]:
    """The bot's reply to ``message`` as ``decision`` words it (an answer, not a hand-off): its fields; on
    ``suggestions`` it keeps the question and the options shown."""
    suggestions: dict[str, Any] = {}
    if decision.source == AnswerSource.SUGGESTIONS:
        options = [{"intent": o["intent"], "label": o["label"]} for o in decision.suggestions]
        suggestions = {"question": message.pk, "options": options, "chosen": ""}
    return {
        "sender": Sender.BOT,
        "text": decision.text,
        "source": decision.source,
        "intent": decision.intent,
        "confidence": decision.confidence,
        "article_id": decision.article_id,
        "model_version_id": decision.model_version_id,
        "suggestions": suggestions,
        "citations": list(decision.citations),
    }


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
