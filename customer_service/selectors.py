"""Tenant-scoped reads for the support chatbot."""

from django.db.models import Case, F, QuerySet, Value, When

from customer_service.models import AnswerTemplate, Article, Conversation, ConversationStatus, Message

OPEN_STATUSES = (ConversationStatus.BOT, ConversationStatus.WAITING, ConversationStatus.OPERATOR)


def template_list(*, organisation) -> QuerySet[AnswerTemplate]:
    return AnswerTemplate.objects.for_org(organisation).order_by("intent")


def template_get(*, organisation, template_id: int) -> AnswerTemplate | None:
    return AnswerTemplate.objects.for_org(organisation).filter(pk=template_id).first()


def article_list(*, organisation) -> QuerySet[Article]:
    return Article.objects.for_org(organisation).order_by("title")


def article_get(*, organisation, article_id: int) -> Article | None:
    return Article.objects.for_org(organisation).filter(pk=article_id).first()


def conversation_list(*, organisation, status: str | None = None) -> QuerySet[Conversation]:
    qs = Conversation.objects.for_org(organisation).select_related("assigned_to")
    if status == "open":  # what needs a person first: waiting, then with an operator, then with the bot
        priority = Case(
            When(status=ConversationStatus.WAITING, then=Value(0)),
            When(status=ConversationStatus.OPERATOR, then=Value(1)),
            default=Value(2),
        )
        return (
            qs.filter(status__in=OPEN_STATUSES)
            .annotate(priority=priority)
            .order_by("priority", F("last_message_at").desc(nulls_last=True), "-id")
        )
    if status:
        return qs.filter(status=status)
    return qs


def conversation_get(*, organisation, conversation_id: int) -> Conversation | None:
    return (
        Conversation.objects.for_org(organisation)
        .select_related("assigned_to")
        .filter(pk=conversation_id)
        .first()
    )


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    return (
        Message.objects.for_org(conversation.organisation)
        .filter(conversation=conversation)
        .select_related("author", "conversation")
        .order_by("created_at", "id")
    )


def correction_count(*, organisation) -> int:
    return Message.objects.for_org(organisation).exclude(corrected_intent="").count()


def intent_model(*, organisation):
    """The organisation's active intent model version, or None."""
    from core.registry.services.common import active_version

    return active_version(organisation, "customer_service", "intent")


def intent_labels(*, organisation) -> list[str]:
    """The intents of the active intent model (what an operator may correct a message to)."""
    version = intent_model(organisation=organisation)
    return list(version.labels) if version is not None else []
