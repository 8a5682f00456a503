"""The bot's best guesses, offered as buttons when it is not sure enough to answer ("Did you mean: ...?"),
and the visitor's choice among them.

A choice answers with the chosen intent's template and labels the visitor's question with that intent, as
a correction for the next retrain (``corrections.message_label_by_visitor``: the path operators' corrections
take); "none of these" hands the conversation to a person. The visitor sees option labels and picks one by
its position: intent names stay internal.
"""

from typing import Any

from django.db import transaction

from core.errors import Conflict, InvalidInput, NotFound
from customer_service.models import (
    AnswerSource,
    AnswerTemplate,
    Conversation,
    ConversationStatus,
    Message,
    Sender,
)
from customer_service.services.bot import bot_settings_for
from customer_service.services.conversations import NONE_LABEL, _add_message, _announce, locked
from customer_service.services.corrections import message_label_by_visitor
from customer_service.services.handoff import hand_off_locked

MAX_SUGGESTIONS = 3
NONE_OF_THESE = "none"


def intent_label(intent: str) -> str:
    """How a visitor sees an intent: ``cancel_subscription`` -> ``Cancel subscription``."""
    words = intent.replace("_", " ").replace("-", " ").split()
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def suggestion_options(
    *, organisation, probabilities: dict[str, float], floor: float, exclude: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Up to three intents with an active answer, most likely first, each at or above ``floor``."""
    likely = [
        (intent, p)
        for intent, p in sorted(probabilities.items(), key=lambda item: -item[1])
        if p >= floor and intent not in exclude
    ][: MAX_SUGGESTIONS * 3]
    answered = set(
        AnswerTemplate.objects.for_org(organisation)
        .filter(intent__in=[intent for intent, _ in likely], active=True)
        .values_list("intent", flat=True)
    )
    return [
        {"intent": intent, "label": intent_label(intent), "probability": round(float(p), 4)}
        for intent, p in likely
        if intent in answered
    ][:MAX_SUGGESTIONS]


def suggestions_text(options: list[dict[str, Any]]) -> str:
    return "Did you mean: " + " / ".join(option["label"] for option in options) + "?"


def _option(offered: Message, option: Any) -> str:
    """The intent the visitor picked (``option``: a position among the offered ones), or ``none``."""
    options = offered.suggestions.get("options", [])
    if option == NONE_OF_THESE:
        return NONE_OF_THESE
    if isinstance(option, bool) or not isinstance(option, int) or not 0 <= option < len(options):
        raise InvalidInput(
            f"Choose one of the {len(options)} suggestions (0 to {len(options) - 1}) or 'none'.",
            details={"field": "option"},
        )
    return str(options[option]["intent"])


def suggestion_choose(*, conversation: Conversation, message_id: Any, option: Any) -> list[Message]:
    """The visitor picked a suggestion of the bot's message ``message_id`` (or none of them): stored as the
    visitor's message, then answered with that intent's template (or handed off). Returns the new messages."""
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise InvalidInput(
            "Say which suggestions message is answered (its id).", details={"field": "message"}
        )
    bot = bot_settings_for(organisation=conversation.organisation)
    with transaction.atomic():
        organisation = conversation.organisation
        conversation = locked(conversation.pk)  # NotFound when it was deleted meanwhile
        conversation.organisation = organisation
        offered = (
            Message.all_tenants.select_for_update()
            .filter(conversation=conversation, pk=message_id, source=AnswerSource.SUGGESTIONS)
            .first()
        )
        if offered is None:
            raise NotFound("No such suggestions in this conversation.")
        if offered.suggestions.get("chosen"):
            raise Conflict("These suggestions were already answered.")
        if conversation.status != ConversationStatus.BOT:
            raise Conflict("A member of our team has this conversation now: write to them.")
        intent = _option(offered, option)
        offered.suggestions = {**offered.suggestions, "chosen": intent}
        offered.save(update_fields=["suggestions", "updated_at"])
        if intent == NONE_OF_THESE:
            choice = _add_message(
                conversation, sender=Sender.VISITOR, text=NONE_LABEL, source=AnswerSource.CHOICE
            )
            _announce(conversation, choice)
            reason = "None of the bot's suggestions fitted: " + ", ".join(
                o["intent"] for o in offered.suggestions.get("options", [])
            )
            return [choice, hand_off_locked(conversation, bot=bot, reason=reason)]
        return _answer_choice(conversation, bot, offered, intent)


def _answer_choice(conversation: Conversation, bot, offered: Message, intent: str) -> list[Message]:
    organisation = conversation.organisation
    question_id = offered.suggestions.get("question")
    if question_id is not None:
        message_label_by_visitor(organisation=organisation, message_id=question_id, intent=intent)
    choice = _add_message(
        conversation,
        sender=Sender.VISITOR,
        text=intent_label(intent),
        source=AnswerSource.CHOICE,
        intent=intent,
    )
    _announce(conversation, choice)
    template = AnswerTemplate.objects.for_org(organisation).filter(intent=intent, active=True).first()
    if template is None:  # its answer was removed since it was offered
        reason = f"The visitor chose '{intent}', which has no answer any more."
        return [choice, hand_off_locked(conversation, bot=bot, reason=reason, intent=intent)]
    reply = _add_message(
        conversation,
        sender=Sender.BOT,
        text=template.body,
        source=AnswerSource.TEMPLATE,
        intent=intent,
        model_version_id=offered.model_version_id,
    )
    _announce(conversation, reply)
    return [choice, reply]
