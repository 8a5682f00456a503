"""Tenant-scoped reads for the support chatbot."""

from typing import Any, TypeVar

from django.db.models import Case, F, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Substr

from core.errors import InvalidInput
from customer_service.models import (
    AnswerTemplate,
    Article,
    Conversation,
    ConversationStatus,
    Message,
    Sender,
)

OPEN_STATUSES = (ConversationStatus.BOT, ConversationStatus.WAITING, ConversationStatus.OPERATOR)
PREVIEW_CHARS = 120


def template_list(*, organisation) -> QuerySet[AnswerTemplate]:
    return AnswerTemplate.objects.for_org(organisation).order_by("intent")


def template_get(*, organisation, template_id: int) -> AnswerTemplate | None:
    return AnswerTemplate.objects.for_org(organisation).filter(pk=template_id).first()


def article_list(*, organisation) -> QuerySet[Article]:
    return Article.objects.for_org(organisation).order_by("title")


def article_get(*, organisation, article_id: int) -> Article | None:
    return Article.objects.for_org(organisation).filter(pk=article_id).first()


MAX_SEARCH_CHARS = 100
_Conversations = TypeVar("_Conversations", bound=QuerySet[Any])


def _search(qs: _Conversations, *, organisation, query: str) -> _Conversations:
    """Conversations whose messages (what the visitor wrote: names, e-mails, questions), site, operator's
    e-mail or number contain ``query``, case-insensitively (LIKE on SQLite, ILIKE-alike on PostgreSQL)."""
    query = query.strip()
    if len(query) > MAX_SEARCH_CHARS:
        raise InvalidInput(f"Search for at most {MAX_SEARCH_CHARS} characters.", details={"field": "q"})
    if "\x00" in query:
        raise InvalidInput("The search contains a NUL character.", details={"field": "q"})
    if not query:
        return qs
    matching = Message.objects.for_org(organisation).filter(text__icontains=query).values("conversation_id")
    found = Q(pk__in=matching) | Q(origin__icontains=query) | Q(assigned_to__email__icontains=query)
    number = query.removeprefix("#")
    if number.isdigit() and len(number) < 18:
        found |= Q(pk=int(number))
    return qs.filter(found)


def conversation_list(*, organisation, status: str | None = None, query: str = "") -> QuerySet[Conversation]:
    """Conversations by status ("open": all but closed, what needs a person first; "closed": the history,
    latest closed first), optionally searched (``query``), each with its first visitor message as preview."""
    first_question = (
        Message.objects.for_org(organisation)
        .filter(conversation=OuterRef("pk"), sender=Sender.VISITOR)
        .order_by("created_at", "id")
        .values("text")[:1]
    )
    qs = (
        Conversation.objects.for_org(organisation)
        .select_related("assigned_to")
        .annotate(preview=Substr(Subquery(first_question), 1, PREVIEW_CHARS))
    )
    qs = _search(qs, organisation=organisation, query=query)
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
    if status == ConversationStatus.CLOSED:
        return qs.filter(status=status).order_by(
            F("closed_at").desc(nulls_last=True), F("last_message_at").desc(nulls_last=True), "-id"
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


def operating_points(*, organisation, version=None) -> list[dict[str, Any]] | None:
    """The active intent model's coverage curve on its held-out rows, for choosing the threshold: per
    threshold, the share of questions it would answer and the share it would answer wrongly (of all, and of
    those answered), in percent. None for a model evaluated before the curve was stored (retrain it)."""
    version = version or intent_model(organisation=organisation)
    curve = (version.metrics or {}).get("coverage") if version is not None else None
    if not curve:
        return None
    points = []
    for point in curve:
        answered, wrong = float(point["answered"]), float(point["wrong"])
        points.append(
            {
                "threshold": float(point["threshold"]),
                "answered": 100 * answered,
                "wrong": 100 * wrong,
                "wrong_of_answered": 100 * wrong / answered if answered else 0.0,
                "handed_on": 100 * (1 - answered),
            }
        )
    return points
