"""Operators' corrections of the intents the bot found, and what they feed: the corrections as a
dataset, retraining the intent model from them, and the batch classification of visitor messages the bot
answered without an intent (an ``infer`` job of the platform's rows inference)."""

from core.errors import Conflict, InvalidInput, NotFound
from core.registry import feedback
from core.registry import rows as rows_infer
from core.registry.services.common import active_version
from customer_service.models import LabelSource, Message, Sender
from customer_service.services.common import APP, INTENT_TASK, csv_bytes
from customer_service.services.knowledge import _intent_name


def message_correct_intent(*, organisation, message_id: int, intent: str) -> Message:
    """An operator's correction of the intent of a visitor message: kept as training data."""
    intent = _intent_name(intent)
    message = Message.objects.for_org(organisation).filter(pk=message_id, sender=Sender.VISITOR).first()
    if message is None:
        raise NotFound("No such visitor message.")
    version = active_version(organisation, APP, INTENT_TASK)
    if version is not None and version.labels and intent not in version.labels:
        raise InvalidInput(f"'{intent}' is not an intent of the active model.", details={"field": "intent"})
    message.corrected_intent, message.label_source = intent, LabelSource.OPERATOR
    message.save(update_fields=["corrected_intent", "label_source", "updated_at"])
    return message


def message_label_by_visitor(*, organisation, message_id: int, intent: str) -> Message | None:
    """The visitor picked ``intent`` among the bot's suggestions for their question: a labelled example for
    the next retrain (``retrain_with_corrections``), like an operator's correction, which it never overrides.
    Returns the message, or None if an operator labelled it already."""
    intent = _intent_name(intent)
    message = Message.objects.for_org(organisation).filter(pk=message_id, sender=Sender.VISITOR).first()
    if message is None:
        raise NotFound("No such visitor message.")
    if message.label_source == LabelSource.OPERATOR:
        return None
    message.corrected_intent, message.label_source = intent, LabelSource.VISITOR
    message.save(update_fields=["corrected_intent", "label_source", "updated_at"])
    return message


def corrections_csv(*, organisation) -> bytes:
    """Operator-corrected visitor messages as a ``text,label`` dataset, ready to upload for training."""
    corrected = Message.objects.for_org(organisation).exclude(corrected_intent="")
    return csv_bytes(("text", "label"), corrected.values_list("text", "corrected_intent"))


def _unclassified_messages(organisation):
    return Message.objects.for_org(organisation).filter(sender=Sender.VISITOR, intent="")


def _store_intents(organisation, messages, predictions, version) -> None:
    for message, prediction in zip(messages, predictions, strict=True):
        message.intent = prediction.label
        message.confidence = prediction.probabilities[prediction.label]
        message.model_version_id = version.pk
    Message.all_tenants.bulk_update(messages, ["intent", "confidence", "model_version"])


# Visitor messages the bot answered without an intent (from the knowledge base, or before any intent model):
# the platform's batch inference over rows gives them one, for the inbox's corrections and for reports.
UNCLASSIFIED_MESSAGES = rows_infer.RowSource(
    name="customer_service.messages",
    app=APP,
    task=INTENT_TASK,
    rows=_unclassified_messages,
    text=lambda message: message.text,
    sink=_store_intents,
)


def messages_classify_start(*, organisation, created_by=None):
    """Queue the active intent model over every visitor message that has no intent yet (an ``infer`` job,
    one metered prediction per message)."""
    return rows_infer.rows_infer_start(
        organisation=organisation, source=UNCLASSIFIED_MESSAGES.name, created_by=created_by
    )


def retrain_with_corrections(*, organisation, created_by=None):
    """Feed operators' corrections back through the platform's retrain-from-feedback service: a new version
    of the active intent model's dataset with the corrected visitor messages (a correction wins over the same
    text's old label) and a training job on it, promoted only if it beats the active model."""
    version = active_version(organisation, APP, INTENT_TASK)
    corrected = Message.objects.for_org(organisation).exclude(corrected_intent="")
    if version is not None and version.dataset_id is not None and not corrected.exists():
        raise Conflict(
            "No operator corrections yet: correct the intent of visitor messages in the inbox first."
        )
    return feedback.model_retrain_from_feedback(
        organisation=organisation,
        app=APP,
        task=INTENT_TASK,
        feedback=corrected.order_by("updated_at").values_list("text", "corrected_intent"),
        source="with-corrections.csv",
        config=None,  # the fast model (seconds); a fine-tune can follow from the models page
        created_by=created_by,
    )
