"""Tenant-scoped reads for the support chatbot."""

from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

from django.db.models import Case, Count, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce, Substr
from django.urls import reverse

from core.billing.models import UsageEvent
from core.errors import InvalidInput
from core.jobs.models import ACTIVE_STATUSES, TrainingJob
from core.products import OnboardingStep, StepLink
from core.registry.models import Dataset, ModelVersion
from core.tenancy.models import Membership
from core.tenancy.roles import role_can
from customer_service.models import (
    AnswerTemplate,
    Article,
    Conversation,
    ConversationStatus,
    InternalNote,
    Message,
    SavedReply,
    Sender,
)
from customer_service.services.onboarding import SAMPLE_DATASET

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
    """Conversations whose messages (what the visitor wrote: names, e-mails, questions), internal notes,
    site or page, operator's e-mail or number contain ``query``, case-insensitively (LIKE on SQLite,
    ILIKE-alike on PostgreSQL)."""
    query = query.strip()
    if len(query) > MAX_SEARCH_CHARS:
        raise InvalidInput(f"Search for at most {MAX_SEARCH_CHARS} characters.", details={"field": "q"})
    if "\x00" in query:
        raise InvalidInput("The search contains a NUL character.", details={"field": "q"})
    if not query:
        return qs
    matching = Message.objects.for_org(organisation).filter(text__icontains=query).values("conversation_id")
    noted = InternalNote.objects.for_org(organisation).filter(text__icontains=query).values("conversation_id")
    found = (
        Q(pk__in=matching)
        | Q(pk__in=noted)
        | Q(origin__icontains=query)
        | Q(page_url__icontains=query)
        | Q(assigned_to__email__icontains=query)
    )
    number = query.removeprefix("#")
    if number.isascii() and number.isdigit() and len(number) < 18:
        found |= Q(pk=int(number))
    return qs.filter(found)


_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def _with_preview_and_unread(qs: QuerySet[Conversation], *, organisation) -> QuerySet[Conversation]:
    """Each conversation with its first visitor message (``preview``) and how many of the visitor's messages
    operators have not seen yet (``unread``: after ``operator_seen_at``)."""
    messages = Message.objects.for_org(organisation).filter(
        conversation=OuterRef("pk"), sender=Sender.VISITOR
    )
    first_question = messages.order_by("created_at", "id").values("text")[:1]
    unread = (
        messages.filter(created_at__gt=Coalesce(OuterRef("operator_seen_at"), Value(_NEVER)))
        .order_by()
        .values("conversation")
        .annotate(n=Count("id"))
        .values("n")
    )
    return qs.annotate(
        preview=Substr(Subquery(first_question), 1, PREVIEW_CHARS),
        unread=Coalesce(Subquery(unread, output_field=IntegerField()), Value(0)),
    )


Assignee = int | Literal["none"] | None


def conversation_list(
    *, organisation, status: str | None = None, query: str = "", assignee: Assignee = None
) -> QuerySet[Conversation]:
    """Conversations by status ("open": all but closed, what needs a person first; "closed": the history,
    latest closed first; otherwise newest activity first), optionally searched (``query``) and by who is
    assigned (a user id, or "none"), each with its first visitor message as preview and its unread count."""
    qs = _with_preview_and_unread(
        Conversation.objects.for_org(organisation).select_related("assigned_to"), organisation=organisation
    )
    qs = _search(qs, organisation=organisation, query=query)
    if assignee == "none":
        qs = qs.filter(assigned_to__isnull=True)
    elif assignee is not None:
        qs = qs.filter(assigned_to_id=assignee)
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
        qs = qs.filter(status=status)
    return qs.order_by(F("last_message_at").desc(nulls_last=True), "-id")


def conversation_get(*, organisation, conversation_id: int) -> Conversation | None:
    return _with_preview_and_unread(
        Conversation.objects.for_org(organisation).select_related("assigned_to").filter(pk=conversation_id),
        organisation=organisation,
    ).first()


MAX_VISITOR_CONVERSATIONS = 20


def visitor_conversations(*, conversation: Conversation) -> list[Conversation]:
    """The same visitor's other conversations, newest first (at most 20): the same e-mail address (when they
    left one) or the same widget visitor id (the same browser); none when neither is known."""
    same = Q()
    if conversation.visitor_email:
        same |= Q(visitor_email__iexact=conversation.visitor_email)
    if conversation.visitor_hash:
        same |= Q(visitor_hash=conversation.visitor_hash)
    if not same:
        return []
    organisation = conversation.organisation
    others = Conversation.objects.for_org(organisation).filter(same).exclude(pk=conversation.pk)
    qs = _with_preview_and_unread(others, organisation=organisation).select_related("assigned_to")
    return list(qs.order_by("-created_at", "-id")[:MAX_VISITOR_CONVERSATIONS])


def note_list(*, conversation: Conversation) -> QuerySet[InternalNote]:
    return (
        InternalNote.objects.for_org(conversation.organisation)
        .filter(conversation=conversation)
        .select_related("author")
        .order_by("created_at", "id")
    )


def saved_reply_list(*, organisation, query: str = "") -> QuerySet[SavedReply]:
    qs = SavedReply.objects.for_org(organisation).order_by("title", "id")
    query = query.strip()
    return qs.filter(Q(title__icontains=query) | Q(body__icontains=query)) if query else qs


def saved_reply_get(*, organisation, reply_id: int) -> SavedReply | None:
    return SavedReply.objects.for_org(organisation).filter(pk=reply_id).first()


def inbox_operators(*, organisation) -> list[dict[str, Any]]:
    """The members a conversation can be assigned to (their role may operate the inbox)."""
    members = Membership.objects.for_org(organisation).select_related("user").order_by("user__email")
    return [
        {"id": m.user_id, "email": m.user.email, "name": m.user.get_full_name(), "role": m.role}
        for m in members
        if role_can(m.role, "inbox.operate")
    ]


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    return (
        Message.objects.for_org(conversation.organisation)
        .filter(conversation=conversation)
        .select_related("author", "conversation", "article")
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


def operating_points(
    *, organisation, version=None, out_of_scope: bool = False
) -> list[dict[str, Any]] | None:
    """The active intent model's coverage curve on its held-out rows, for choosing the threshold: per
    threshold, the share of questions it would answer and the share it would answer wrongly (of all, and of
    those answered), in percent. None for a model evaluated before the curve was stored (retrain it). The
    curve is over what the bot's rule compares: the top probability, or with ``out_of_scope`` (the tenant's
    ``out_of_scope_check``) the top probability capped by ``in_scope`` (``in_scope_coverage``; the plain
    curve for a model without an out-of-scope model, whose rule is the plain one)."""
    version = version or intent_model(organisation=organisation)
    metrics = (version.metrics or {}) if version is not None else {}
    curve = (out_of_scope and metrics.get("in_scope_coverage")) or metrics.get("coverage")
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


# --- onboarding ----------------------------------------------------------------------------------------

TRY_PAGE = "/customer-service/try/"


def _setup(tab: str) -> str:
    return f"{reverse('customer_service:index')}#{tab}"


def _training_job(organisation) -> TrainingJob | None:
    """The intent model's training job still queued or running, if any."""
    jobs = TrainingJob.objects.for_org(organisation).filter(
        kind="ml.train", app="customer_service", status__in=ACTIVE_STATUSES, params__task="intent"
    )
    return jobs.order_by("-created_at").first()


def chatbot_datasets(*, organisation) -> QuerySet[Dataset]:
    """The organisation's classification datasets the chatbot may count and offer: not those another product
    trains on (the finance monitor's default datasets hold its sentiment and topic labels), unless the chatbot
    trained on them too. A dataset records no product; the training jobs that read it do."""
    used: dict[bool, set[int]] = {True: set(), False: set()}
    trainings = TrainingJob.objects.for_org(organisation).filter(params__has_key="dataset_id")
    versions = ModelVersion.objects.for_org(organisation).filter(dataset__isnull=False)
    for app, dataset_id in [
        *trainings.values_list("app", "params__dataset_id"),
        *versions.values_list("app", "dataset_id"),
    ]:
        if isinstance(dataset_id, int):
            used[app == "customer_service"].add(dataset_id)
    others = used[False] - used[True]
    return Dataset.objects.for_org(organisation).filter(task="classification").exclude(pk__in=others)


def dataset_intents(*, organisation) -> list[str]:
    """The labels of the organisation's latest classification dataset: the intents to write answers for
    before a model is trained on it."""
    dataset = chatbot_datasets(organisation=organisation).first()
    return sorted(dataset.labels) if dataset is not None else []


def _train_step(organisation, model) -> OnboardingStep:
    datasets = chatbot_datasets(organisation=organisation)
    dataset = datasets.filter(name=SAMPLE_DATASET).order_by("-version").first() or datasets.first()
    links = [StepLink("Datasets", reverse("datasets"))]
    if dataset is not None:
        fields = (("app", "customer_service"), ("task", "intent"), ("method", "auto"))
        train = StepLink(
            f"Train on {dataset.name}", reverse("dataset-train", args=[dataset.pk]), True, fields
        )
        links.insert(0, train)
    running = _training_job(organisation)
    if running is not None:
        detail = f"Training now: job #{running.pk}."
        links.insert(0, StepLink(f"Follow job #{running.pk}", reverse("job-detail", args=[running.pk])))
    elif model is not None:
        detail = f"Version {model.version} answers {len(model.labels)} intents."
    else:
        detail = "The fast model trains in seconds on the questions you uploaded."
    return OnboardingStep("train", "Train the intent model", model is not None, detail, tuple(links))


def _answers_step(organisation, model) -> OnboardingStep:
    answered = set(
        AnswerTemplate.objects.for_org(organisation).filter(active=True).values_list("intent", flat=True)
    )
    intents = list(model.labels) if model is not None else []
    covered = [i for i in intents if i in answered] if intents else sorted(answered)
    detail = (
        f"{len(covered)} of {len(intents)} intents have an answer."
        if intents
        else f"{len(covered)} answer{'s' if len(covered) != 1 else ''} written."
    )
    links = (StepLink("Write answers", _setup("answers")),)
    return OnboardingStep("answers", "Add answers for the intents", bool(covered), detail, links)


def _intent_model_tried(organisation) -> bool:
    """Whether an intent model answered a prediction (the model page's try box, the API): its ledger line."""
    versions = ModelVersion.objects.for_org(organisation).filter(app="customer_service", task="intent")
    ids = list(versions.values_list("pk", flat=True))
    lines = UsageEvent.objects.for_org(organisation).filter(meter="predictions")
    return bool(ids) and lines.filter(metadata__model_version__in=ids).exists()


def onboarding_checklist(*, organisation) -> list[OnboardingStep]:
    """The chatbot's five steps to a working bot, each done or not as the organisation's data says: data to
    start from, a trained intent model, answers for its intents, a conversation tried, the widget used on a
    page outside Trellis (its try page does not count). Trying counts a chat or a prediction of an intent
    model (the model page's try box)."""
    model = intent_model(organisation=organisation)
    has_data = (
        chatbot_datasets(organisation=organisation).exists() or Article.objects.for_org(organisation).exists()
    )
    conversations = Conversation.objects.for_org(organisation)
    tried = conversations.exists() or _intent_model_tried(organisation)
    embedded = conversations.exclude(page_url="").exclude(page_url__contains=TRY_PAGE).exists()
    data = OnboardingStep(
        "data",
        "Start from sample data, or upload your questions",
        has_data,
        "The sample: 160 banking questions in 8 intents (BANKING77, CC BY 4.0) and an answer for each. "
        "Yours: questions labelled with intents (a text,label CSV), or questions with their answers.",
        (
            StepLink("Load the sample data", reverse("customer_service:sample"), post=True),
            StepLink("Upload intents (text,label)", reverse("datasets")),
            StepLink("Upload questions and answers", _setup("knowledge")),
        ),
    )
    try_links = [StepLink("Try the chat widget", reverse("customer_service:try"))]
    if model is not None:
        try_links.append(StepLink("Try the model", reverse("model-detail", args=[model.pk]) + "#try"))
    return [
        data,
        _train_step(organisation, model),
        _answers_step(organisation, model),
        OnboardingStep(
            "try", "Try it", tried, "Ask the bot a question as a visitor would.", tuple(try_links)
        ),
        OnboardingStep(
            "embed",
            "Embed the widget on your site",
            embedded,
            "Paste the snippet into your pages; this is done once a visitor chats on one of them.",
            (StepLink("Get the snippet", _setup("widget")),),
        ),
    ]
