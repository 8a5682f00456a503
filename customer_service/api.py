"""The support chatbot over the REST API (``/api/customer-service/``): validate, one service, serialize."""

from dataclasses import asdict

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.fields import text_field
from core.api.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from core.api.pagination import Pagination
from core.api.permissions import permission_scope
from core.api.serializers import JobOut, StrictSerializer
from core.api.views import paginate
from core.errors import InvalidInput, NotFound
from core.tenancy.models import ApiKey
from core.tenancy.roles import role_can
from customer_service import selectors, services
from customer_service.models import ConversationStatus, UncertainMode
from customer_service.services import analytics, unanswered


class SettingsOut(serializers.Serializer):
    widget_key = serializers.CharField()
    allowed_origins = serializers.ListField(child=serializers.CharField())
    intent_threshold = serializers.FloatField()
    retrieval_threshold = serializers.FloatField()
    greeting = serializers.CharField()
    handoff_message = serializers.CharField()
    bot_name = serializers.CharField()
    intent_thresholds = serializers.DictField(child=serializers.FloatField())
    uncertain_mode = serializers.CharField()
    suggestion_floor = serializers.FloatField()
    rephrase_message = serializers.CharField()
    office_hours_enabled = serializers.BooleanField()
    office_hours = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    timezone = serializers.CharField()
    grounded_answers = serializers.BooleanField()
    out_of_scope_check = serializers.BooleanField()


def _between(name: str) -> dict[str, str]:
    message = f"{name} must be a number between 0 and 1."
    return {"min_value": message, "max_value": message}


class SettingsIn(StrictSerializer):
    allowed_origins = serializers.ListField(child=serializers.CharField(max_length=200), required=False)
    intent_threshold = serializers.FloatField(
        required=False, min_value=0, max_value=1, error_messages=_between("intent_threshold")
    )
    retrieval_threshold = serializers.FloatField(
        required=False, min_value=0, max_value=1, error_messages=_between("retrieval_threshold")
    )
    greeting = text_field(max_length=500, required=False)
    handoff_message = text_field(max_length=500, required=False)
    bot_name = text_field(max_length=60, required=False)
    intent_thresholds = serializers.DictField(
        child=serializers.FloatField(min_value=0, max_value=1),
        required=False,
        help_text="per-intent thresholds; an intent not listed uses intent_threshold",
    )
    uncertain_mode = serializers.ChoiceField(
        choices=UncertainMode.values, required=False, help_text="suggest, rephrase or handoff"
    )
    suggestion_floor = serializers.FloatField(
        required=False, min_value=0, max_value=1, error_messages=_between("suggestion_floor")
    )
    rephrase_message = text_field(max_length=500, required=False)
    office_hours_enabled = serializers.BooleanField(required=False)
    office_hours = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField(max_length=5), min_length=2, max_length=2),
        required=False,
        help_text='by weekday (0 = Monday): ["09:00", "17:00"]; a missing day is closed',
    )
    timezone = serializers.CharField(max_length=64, required=False, help_text="e.g. Europe/Berlin")
    grounded_answers = serializers.BooleanField(
        required=False, help_text="answers written from knowledge-base passages, citing them"
    )
    out_of_scope_check = serializers.BooleanField(
        required=False,
        help_text="the threshold compares the top probability capped by the model's in_scope score: "
        "questions unlike the training examples are not answered from a template",
    )


class TemplateOut(serializers.Serializer):
    id = serializers.IntegerField()
    intent = serializers.CharField()
    body = serializers.CharField()
    active = serializers.BooleanField()
    updated_at = serializers.DateTimeField()


class TemplateIn(StrictSerializer):
    intent = text_field(max_length=100)
    body = text_field(max_length=services.MAX_TEMPLATE_CHARS, trim_whitespace=False)
    active = serializers.BooleanField(default=True)


class ArticleOut(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField()
    url = serializers.CharField()
    published = serializers.BooleanField()
    updated_at = serializers.DateTimeField()


class ArticleIn(StrictSerializer):
    title = text_field(max_length=200)
    body = text_field(max_length=services.MAX_ARTICLE_CHARS)
    url = serializers.URLField(required=False, allow_blank=True, default="")
    published = serializers.BooleanField(default=True)


class AnswerIn(StrictSerializer):
    text = text_field(max_length=services.MAX_MESSAGE_CHARS, trim_whitespace=False)


class ConversationOut(serializers.Serializer):
    id = serializers.IntegerField()
    public_id = serializers.UUIDField()
    status = serializers.CharField()
    assigned_to = serializers.EmailField(source="assigned_to.email", allow_null=True, default=None)
    handoff_reason = serializers.CharField()
    origin = serializers.CharField()
    rating = serializers.IntegerField(allow_null=True)
    visitor_email = serializers.CharField(help_text="the address the visitor left when nobody could answer")
    email_requested = serializers.BooleanField(help_text="the bot waits for the visitor's e-mail address")
    last_message_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    preview = serializers.CharField(default="", allow_null=True)  # the visitor's first message (lists)
    created_at = serializers.DateTimeField()
    assigned_to_id = serializers.IntegerField(allow_null=True, help_text="the assigned operator's user id")
    page_url = serializers.CharField(help_text="the page the visitor is on (as the widget last said)")
    unread = serializers.IntegerField(default=0, help_text="visitor messages no operator has seen yet")


class MessageOut(serializers.Serializer):
    id = serializers.IntegerField()
    sender = serializers.CharField()
    author = serializers.EmailField(source="author.email", allow_null=True, default=None)
    text = serializers.CharField()
    source = serializers.CharField()
    intent = serializers.CharField()
    confidence = serializers.FloatField(allow_null=True)
    corrected_intent = serializers.CharField()
    label_source = serializers.CharField(help_text="who labelled it: operator, or visitor (a suggestion)")
    article = serializers.IntegerField(source="article_id", allow_null=True)
    created_at = serializers.DateTimeField()


class AnswerOut(serializers.Serializer):
    source = serializers.CharField(
        help_text="what answered: a template, an article, a grounded answer, or a hand-off"
    )
    text = serializers.CharField()
    reason = serializers.CharField()
    intent = serializers.CharField()
    confidence = serializers.FloatField(allow_null=True)
    article_id = serializers.IntegerField(allow_null=True)
    model_version_id = serializers.IntegerField(allow_null=True)
    suggestions = serializers.ListField(
        child=serializers.DictField(), help_text="the best guesses offered when not sure: intent, label"
    )
    uncertain = serializers.BooleanField(help_text="not sure enough to answer")
    handoff = serializers.BooleanField()
    citations = serializers.ListField(
        child=serializers.DictField(), help_text="grounded answers: the articles cited (article, title, url)"
    )
    preface = serializers.CharField(help_text="on a hand-off: what the bot says first")


class NoteOut(serializers.Serializer):
    id = serializers.IntegerField()
    author = serializers.EmailField(source="author.email", allow_null=True, default=None)
    text = serializers.CharField()
    created_at = serializers.DateTimeField()


class ConversationDetailOut(ConversationOut):
    messages = MessageOut(many=True)
    notes = NoteOut(many=True, help_text="internal notes: operators only, never sent to the visitor")
    visitor_conversations = ConversationOut(
        many=True, help_text="the visitor's other conversations (same e-mail, or same widget visitor id)"
    )
    intents = serializers.ListField(child=serializers.CharField(), help_text="labels an operator may pick")


class RejectedLineOut(serializers.Serializer):
    line = serializers.IntegerField()
    reason = serializers.CharField()


class TemplateImportOut(serializers.Serializer):
    saved = serializers.IntegerField()
    rejected = RejectedLineOut(many=True)


class QaImportOut(serializers.Serializer):
    articles = serializers.IntegerField()
    rejected = RejectedLineOut(many=True)
    job = serializers.IntegerField(allow_null=True, help_text="the fine-tuning job, from 50 pairs")


class ReplyIn(StrictSerializer):
    text = text_field(max_length=services.MAX_MESSAGE_CHARS, trim_whitespace=False)


class CorrectIn(StrictSerializer):
    intent = text_field(max_length=100)


def _valid(serializer_class, request, **kwargs):
    data = serializer_class(data=request.data, **kwargs)
    data.is_valid(raise_exception=True)
    return data.validated_data


class SettingsView(APIView):
    permissions = {"GET": "org.view", "PATCH": "org.manage"}

    @extend_schema(responses=SettingsOut)
    def get(self, request):
        return Response(SettingsOut(services.bot_settings_for(organisation=request.organisation)).data)

    @extend_schema(request=SettingsIn, responses=SettingsOut)
    def patch(self, request):
        bot = services.bot_settings_update(organisation=request.organisation, **_valid(SettingsIn, request))
        return Response(SettingsOut(bot).data)


class RotateKeyView(APIView):
    permissions = {"POST": "org.manage"}

    @extend_schema(request=None, responses=SettingsOut)
    def post(self, request):
        return Response(SettingsOut(services.widget_key_rotate(organisation=request.organisation)).data)


class TemplateListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "org.view", "POST": "org.manage"}

    @extend_schema(responses=TemplateOut(many=True))
    def get(self, request):
        return paginate(
            self, request, selectors.template_list(organisation=request.organisation), TemplateOut
        )

    @extend_schema(request=TemplateIn, responses={201: TemplateOut})
    def post(self, request):
        template = services.template_save(organisation=request.organisation, **_valid(TemplateIn, request))
        return Response(TemplateOut(template).data, status=status.HTTP_201_CREATED)


class TemplateImportIn(StrictSerializer):
    file = serializers.FileField()


class TemplateImportView(APIView):
    """Many answers at once: a CSV with ``intent,answer`` columns; rejected lines come back with reasons."""

    permissions = {"POST": "org.manage"}
    parser_classes = [MultiPartParser]

    @extend_schema(request=TemplateImportIn, responses={201: TemplateImportOut})
    def post(self, request):
        upload = _valid(TemplateImportIn, request)["file"]
        result = services.templates_import(organisation=request.organisation, data=upload.read())
        return Response(result, status=status.HTTP_201_CREATED)


class QaImportIn(StrictSerializer):
    file = serializers.FileField()
    train = serializers.BooleanField(default=True)


class QaImportView(APIView):
    """Historical questions and answers (``question,answer`` CSV) into the knowledge base, and a job that
    fine-tunes the retrieval model on them (50 pairs or more)."""

    permissions = {"POST": "models.train"}
    parser_classes = [MultiPartParser]

    @extend_schema(request=QaImportIn, responses={201: QaImportOut})
    def post(self, request):
        data = _valid(QaImportIn, request)
        result = services.qa_import(
            organisation=request.organisation,
            data=data["file"].read(),
            train=data["train"],
            created_by=request.user if request.user.pk else None,
        )
        return Response(result, status=status.HTTP_201_CREATED)


class TemplateDetailView(APIView):
    permissions = {"DELETE": "org.manage"}

    @extend_schema(responses=None)
    def delete(self, request, template_id: int):
        services.template_delete(organisation=request.organisation, template_id=template_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ArticleListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "org.view", "POST": "org.manage"}

    @extend_schema(responses=ArticleOut(many=True))
    def get(self, request):
        return paginate(self, request, selectors.article_list(organisation=request.organisation), ArticleOut)

    @extend_schema(request=ArticleIn, responses={201: ArticleOut})
    def post(self, request):
        article = services.article_save(organisation=request.organisation, **_valid(ArticleIn, request))
        return Response(ArticleOut(article).data, status=status.HTTP_201_CREATED)


class ArticleDetailView(APIView):
    permissions = {"GET": "org.view", "PUT": "org.manage", "DELETE": "org.manage"}

    @extend_schema(responses=ArticleOut)
    def get(self, request, article_id: int):
        article = selectors.article_get(organisation=request.organisation, article_id=article_id)
        if article is None:
            raise NotFound("No such article.")
        return Response(ArticleOut(article).data)

    @extend_schema(request=ArticleIn, responses=ArticleOut)
    def put(self, request, article_id: int):
        article = services.article_save(
            organisation=request.organisation, article_id=article_id, **_valid(ArticleIn, request)
        )
        return Response(ArticleOut(article).data)

    @extend_schema(responses=None)
    def delete(self, request, article_id: int):
        services.article_delete(organisation=request.organisation, article_id=article_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AnswerView(APIView):
    """What the bot answers to a text, without a conversation (metered as one prediction)."""

    permissions = {"POST": "models.predict"}

    @extend_schema(request=AnswerIn, responses=AnswerOut, parameters=[IDEMPOTENCY_KEY_PARAMETER])
    @idempotent
    def post(self, request):
        decision = services.answer_preview(
            organisation=request.organisation,
            text=_valid(AnswerIn, request)["text"],
            api_key=request.auth if request.user.pk is None else None,
        )
        return Response({**asdict(decision), "handoff": decision.source == "handoff"})


class ConversationFilter(serializers.Serializer):
    """The inbox's list: ``status`` (``open``: all but closed; ``closed``: the history) and a search ``q``."""

    status = serializers.ChoiceField(
        choices=["open", *ConversationStatus.values], required=False, allow_blank=True
    )
    q = serializers.CharField(
        max_length=selectors.MAX_SEARCH_CHARS, required=False, allow_blank=True, default=""
    )
    assigned = serializers.RegexField(
        r"^(me|none|[0-9]{1,12})$",
        required=False,
        allow_blank=True,
        help_text="me (mine), none (unassigned) or an operator's user id",
    )


class ConversationListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "inbox.operate"}

    @extend_schema(parameters=[ConversationFilter], responses=ConversationOut(many=True))
    def get(self, request):
        wanted = ConversationFilter(data=request.query_params)
        if not wanted.is_valid():
            field, problems = next(iter(wanted.errors.items()))
            message = {
                "status": "status must be open, bot, waiting, operator or closed.",
                "assigned": "assigned must be me, none or an operator's user id.",
            }.get(field, f"{field}: {problems[0]}")
            raise InvalidInput(message, details={"field": field})
        assigned = wanted.validated_data.get("assigned") or None
        if assigned == "me":
            if request.user.pk is None:
                raise InvalidInput("assigned=me needs a signed-in operator.", details={"field": "assigned"})
            assigned = request.user.pk
        qs = selectors.conversation_list(
            organisation=request.organisation,
            status=wanted.validated_data.get("status") or None,
            query=wanted.validated_data["q"],
            assignee="none" if assigned == "none" else int(assigned) if assigned is not None else None,
        )
        return paginate(self, request, qs, ConversationOut)


class ConversationDetailView(APIView):
    permissions = {"GET": "inbox.operate"}

    @extend_schema(responses=ConversationDetailOut)
    def get(self, request, conversation_id: int):
        conversation = selectors.conversation_get(
            organisation=request.organisation, conversation_id=conversation_id
        )
        if conversation is None:
            raise NotFound("No such conversation.")
        messages = selectors.message_list(conversation=conversation)
        return Response(
            {
                **ConversationOut(conversation).data,
                "messages": MessageOut(messages, many=True).data,
                "notes": NoteOut(selectors.note_list(conversation=conversation), many=True).data,
                "visitor_conversations": ConversationOut(
                    selectors.visitor_conversations(conversation=conversation), many=True
                ).data,
                "intents": selectors.intent_labels(organisation=request.organisation),
            }
        )


class ConversationActionView(APIView):
    permissions = {"POST": "inbox.operate"}
    verb = ""

    @extend_schema(request=ReplyIn, responses=ConversationOut)
    def post(self, request, conversation_id: int):
        org, user = request.organisation, request.user
        if user.pk is None:
            raise InvalidInput(
                "Operators act in the inbox as themselves: sign in rather than use an API key."
            )
        if self.verb == "reply":
            text = _valid(ReplyIn, request)["text"]
            services.operator_message(organisation=org, conversation_id=conversation_id, user=user, text=text)
        elif self.verb == "take-over":
            services.conversation_take_over(organisation=org, conversation_id=conversation_id, user=user)
        elif self.verb == "hand-back":
            services.conversation_hand_back(organisation=org, conversation_id=conversation_id, user=user)
        else:
            services.conversation_close_by_operator(
                organisation=org, conversation_id=conversation_id, user=user
            )
        conversation = selectors.conversation_get(organisation=org, conversation_id=conversation_id)
        return Response(ConversationOut(conversation).data)


class CorrectView(APIView):
    permissions = {"POST": "inbox.operate"}

    @extend_schema(request=CorrectIn, responses=MessageOut)
    def post(self, request, message_id: int):
        message = services.message_correct_intent(
            organisation=request.organisation,
            message_id=message_id,
            intent=_valid(CorrectIn, request)["intent"],
        )
        return Response(MessageOut(message).data)


class RetrainView(APIView):
    """Retrain the intent model with the operators' corrections (a new dataset version and a job)."""

    permissions = {"POST": "models.train"}

    @extend_schema(request=None, responses={202: JobOut})
    def post(self, request):
        job = services.retrain_with_corrections(
            organisation=request.organisation, created_by=request.user if request.user.pk else None
        )
        return Response(JobOut(job).data, status=status.HTTP_202_ACCEPTED)


class CorrectionsView(APIView):
    """Operator-corrected messages as a ``text,label`` CSV: upload it as a dataset to retrain. Visitor texts:
    for those who may read conversations."""

    permissions = {"GET": "inbox.operate"}

    @extend_schema(responses={(200, "text/csv"): bytes})
    def get(self, request):
        response = HttpResponse(
            services.corrections_csv(organisation=request.organisation), content_type="text/csv"
        )
        response["Content-Disposition"] = 'attachment; filename="corrections.csv"'
        return response


def _person(request) -> None:
    if request.user.pk is None:
        raise InvalidInput("Operators act in the inbox as themselves: sign in rather than use an API key.")


class NoteIn(StrictSerializer):
    text = text_field(max_length=services.MAX_NOTE_CHARS)


class NoteListView(APIView):
    """A conversation's internal notes: for operators only, never sent to the visitor."""

    permissions = {"GET": "inbox.operate", "POST": "inbox.operate"}

    @extend_schema(responses=NoteOut(many=True))
    def get(self, request, conversation_id: int):
        conversation = selectors.conversation_get(
            organisation=request.organisation, conversation_id=conversation_id
        )
        if conversation is None:
            raise NotFound("No such conversation.")
        return Response(NoteOut(selectors.note_list(conversation=conversation), many=True).data)

    @extend_schema(request=NoteIn, responses={201: NoteOut})
    def post(self, request, conversation_id: int):
        _person(request)
        note = services.note_add(
            organisation=request.organisation,
            conversation_id=conversation_id,
            user=request.user,
            text=_valid(NoteIn, request)["text"],
        )
        return Response(NoteOut(note).data, status=status.HTTP_201_CREATED)


class AssignIn(StrictSerializer):
    operator = serializers.IntegerField(
        allow_null=True, min_value=1, help_text="a member's user id (owner, admin or operator), or null"
    )


class AssignView(APIView):
    """Name the operator who handles a conversation (null: nobody)."""

    permissions = {"POST": "inbox.operate"}

    @extend_schema(request=AssignIn, responses=ConversationOut)
    def post(self, request, conversation_id: int):
        _person(request)
        services.conversation_assign(
            organisation=request.organisation,
            conversation_id=conversation_id,
            actor=request.user,
            operator_id=_valid(AssignIn, request)["operator"],
            may_reassign=role_can(request.role, "org.manage"),
        )
        conversation = selectors.conversation_get(
            organisation=request.organisation, conversation_id=conversation_id
        )
        return Response(ConversationOut(conversation).data)


class SeenIn(StrictSerializer):
    message = serializers.IntegerField(min_value=1, help_text="the last message the operator was shown")


class SeenView(APIView):
    """Operators have read the conversation up to a message: the visitor's later messages stay unread."""

    permissions = {"POST": "inbox.operate"}

    @extend_schema(request=SeenIn, responses=ConversationOut)
    def post(self, request, conversation_id: int):
        services.conversation_mark_seen(
            organisation=request.organisation,
            conversation_id=conversation_id,
            message_id=_valid(SeenIn, request)["message"],
        )
        conversation = selectors.conversation_get(
            organisation=request.organisation, conversation_id=conversation_id
        )
        return Response(ConversationOut(conversation).data)


class OperatorOut(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    name = serializers.CharField()
    role = serializers.CharField()


class OperatorListView(APIView):
    """The members conversations can be assigned to."""

    permissions = {"GET": "inbox.operate"}

    @extend_schema(responses=OperatorOut(many=True))
    def get(self, request):
        return Response(
            OperatorOut(selectors.inbox_operators(organisation=request.organisation), many=True).data
        )


class SavedReplyOut(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    body = serializers.CharField()
    updated_at = serializers.DateTimeField()


class SavedReplyIn(StrictSerializer):
    title = text_field(max_length=services.MAX_SAVED_REPLY_TITLE)
    body = text_field(max_length=services.MAX_MESSAGE_CHARS)


class SavedReplyFilter(serializers.Serializer):
    q = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class SavedReplyListView(APIView):
    """The organisation's saved replies (canned responses), which operators insert into the reply box."""

    pagination_class = Pagination
    permissions = {"GET": "inbox.operate", "POST": "inbox.operate"}

    @extend_schema(parameters=[SavedReplyFilter], responses=SavedReplyOut(many=True))
    def get(self, request):
        wanted = SavedReplyFilter(data=request.query_params)
        if not wanted.is_valid():
            raise InvalidInput("q: search for at most 100 characters.", details={"field": "q"})
        qs = selectors.saved_reply_list(organisation=request.organisation, query=wanted.validated_data["q"])
        return paginate(self, request, qs, SavedReplyOut)

    @extend_schema(request=SavedReplyIn, responses={201: SavedReplyOut})
    def post(self, request):
        reply = services.saved_reply_save(organisation=request.organisation, **_valid(SavedReplyIn, request))
        return Response(SavedReplyOut(reply).data, status=status.HTTP_201_CREATED)


class SavedReplyDetailView(APIView):
    permissions = {"GET": "inbox.operate", "PUT": "inbox.operate", "DELETE": "inbox.operate"}

    @extend_schema(responses=SavedReplyOut)
    def get(self, request, reply_id: int):
        reply = selectors.saved_reply_get(organisation=request.organisation, reply_id=reply_id)
        if reply is None:
            raise NotFound("No such saved reply.")
        return Response(SavedReplyOut(reply).data)

    @extend_schema(request=SavedReplyIn, responses=SavedReplyOut)
    def put(self, request, reply_id: int):
        reply = services.saved_reply_save(
            organisation=request.organisation, reply_id=reply_id, **_valid(SavedReplyIn, request)
        )
        return Response(SavedReplyOut(reply).data)

    @extend_schema(responses=None)
    def delete(self, request, reply_id: int):
        services.saved_reply_delete(organisation=request.organisation, reply_id=reply_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TimingOut(serializers.Serializer):
    count = serializers.IntegerField()
    median_s = serializers.FloatField(allow_null=True)
    p90_s = serializers.FloatField(allow_null=True)


class CsatOut(serializers.Serializer):
    rated = serializers.IntegerField()
    satisfied = serializers.IntegerField(help_text="rated 4 or 5")
    score = serializers.FloatField(allow_null=True, help_text="satisfied / rated")
    mean = serializers.FloatField(allow_null=True)


class ReasonOut(serializers.Serializer):
    reason = serializers.CharField()
    count = serializers.IntegerField()


class IntentShareOut(serializers.Serializer):
    intent = serializers.CharField()
    count = serializers.IntegerField()
    share = serializers.FloatField()


class DayOut(serializers.Serializer):
    date = serializers.DateField()
    conversations = serializers.IntegerField()
    closed = serializers.IntegerField()
    automated = serializers.IntegerField()
    handed_off = serializers.IntegerField()
    rated = serializers.IntegerField()
    rated_4_or_5 = serializers.IntegerField()
    mean_rating = serializers.FloatField(allow_null=True)


class ClusterOut(serializers.Serializer):
    count = serializers.IntegerField()
    examples = serializers.ListField(child=serializers.CharField())
    intent = serializers.CharField(help_text="the intent the model guessed most often for them, or empty")
    message_ids = serializers.ListField(child=serializers.IntegerField())


class AnalyticsOut(serializers.Serializer):
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    timezone = serializers.CharField()
    conversations = serializers.IntegerField()
    closed = serializers.IntegerField()
    automated = serializers.IntegerField(help_text="closed without a person")
    automation_rate = serializers.FloatField(allow_null=True, help_text="automated / closed")
    handed_off = serializers.IntegerField()
    handoff_rate = serializers.FloatField(allow_null=True, help_text="handed_off / conversations")
    handoff_reasons = ReasonOut(many=True)
    first_response = TimingOut(help_text="hand-off to the first operator message")
    resolution = TimingOut(help_text="start to close, for conversations a person handled")
    csat = CsatOut()
    intents = IntentShareOut(many=True)
    daily = DayOut(many=True)
    unanswered = ClusterOut(
        many=True,
        allow_null=True,
        help_text="unanswered questions grouped by meaning (null without the inbox.operate permission)",
    )

    def get_fields(self):  # "from" and "to" are Python keywords: declared as date_from and date_to
        fields = super().get_fields()
        fields["from"] = fields.pop("date_from")
        fields["to"] = fields.pop("date_to")
        return fields


def _reads_conversations(request) -> bool:
    """Whether the caller may read visitors' texts (operators and up; keys with the scope for that)."""
    if isinstance(request.auth, ApiKey):
        return permission_scope("inbox.operate") in request.auth.scopes
    return role_can(request.role, "inbox.operate")


class AnalyticsView(APIView):
    """Support analytics for a date range (``from``/``to``, YYYY-MM-DD, in the bot's time zone; default the
    last 30 days; at most 366): volume, automation and hand-off rates, reasons, operators' response and
    resolution times, CSAT, the bot's intent mix, the daily series and the unanswered questions by meaning."""

    permissions = {"GET": "org.view"}

    @extend_schema(
        parameters=[
            OpenApiParameter("from", OpenApiTypes.DATE, description="first day (default: 29 days before to)"),
            OpenApiParameter("to", OpenApiTypes.DATE, description="last day, inclusive (default: today)"),
        ],
        responses=AnalyticsOut,
    )
    def get(self, request):
        organisation = request.organisation
        period = analytics.analytics_period(
            organisation=organisation,
            date_from=request.query_params.get("from"),
            date_to=request.query_params.get("to"),
        )
        figures = analytics.support_analytics(organisation=organisation, period=period)
        figures["unanswered"] = (
            unanswered.unanswered_clusters(organisation=organisation, period=period)
            if _reads_conversations(request)
            else None
        )
        return Response(figures)
