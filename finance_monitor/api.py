"""The finance monitor over the REST API (``/api/finance-monitor/``): validate, one service, serialize."""

from dataclasses import asdict

from django.urls import reverse
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.views import APIView

from core.api.fields import text_field
from core.api.idempotency import idempotent
from core.api.pagination import Pagination
from core.api.request_checks import query_choice
from core.api.serializers import JobOut, StrictSerializer
from core.api.views import paginate
from core.errors import InvalidInput, NotFound
from finance_monitor import selectors
from finance_monitor.models import EntityKind, Sentiment
from finance_monitor.services import corrections, defaults, entities, feeds, uploads
from finance_monitor.services import documents as docs


def _valid(serializer_class, request, **kwargs):
    data = serializer_class(data=request.data, **kwargs)
    data.is_valid(raise_exception=True)
    return data.validated_data


def _id_value(value: str) -> int | None:
    """An id written in ASCII digits (``"²".isdigit()`` is true but ``int("²")`` fails), within a bigint."""
    if not value or not (value.isascii() and value.isdigit()) or len(value) > 18:
        return None
    return int(value)


def _query_int(request, name: str) -> int | None:
    value = request.query_params.get(name)
    if not value:
        return None
    number = _id_value(value)
    if number is None:
        raise InvalidInput(f"{name} must be a whole number (an id).", details={"field": name})
    return number


def _query_time(request, name: str):
    value = request.query_params.get(name)
    if not value:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:  # well formed but no date: month 13, year 0, an offset of a day
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidInput(
            f"{name} must be an ISO 8601 date and time with a time zone.", details={"field": name}
        )
    if not docs.time_in_range(parsed):  # the ingest's range: nothing stored lies outside it
        raise InvalidInput(f"{name} is out of range ({docs.TIME_RANGE}).", details={"field": name})
    return parsed


# --- documents ----------------------------------------------------------------------------------------


class DocumentIn(StrictSerializer):
    text = text_field(max_length=docs.MAX_TEXT_CHARS, trim_whitespace=False)
    title = serializers.CharField(
        max_length=docs.MAX_TITLE_CHARS, required=False, default="", allow_blank=True
    )
    url = serializers.URLField(max_length=2000, required=False, default="", allow_blank=True)
    author = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    language = serializers.CharField(max_length=16, required=False, default="", allow_blank=True)
    published_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    id = serializers.CharField(
        max_length=200,
        required=False,
        default="",
        allow_blank=True,
        help_text="your id: re-pushes are no-ops",
    )

    def validate_published_at(self, value):
        raw = self.initial_data.get("published_at")
        if isinstance(raw, str) and (given := parse_datetime(raw)) is not None and given.tzinfo is None:
            raise serializers.ValidationError("published_at needs a time zone.")
        return value


def _document_in(data) -> docs.DocumentIn:
    return docs.DocumentIn(
        text=data["text"],
        title=data["title"],
        url=data["url"],
        author=data["author"],
        language=data["language"],
        published_at=data["published_at"],
        client_id=data["id"],
    )


class BatchIn(StrictSerializer):
    documents = serializers.ListField(child=serializers.DictField(), max_length=docs.MAX_BATCH, min_length=1)


class DocumentOut(serializers.Serializer):
    id = serializers.IntegerField()
    client_id = serializers.CharField()
    source = serializers.IntegerField(source="source_id", allow_null=True)
    url = serializers.CharField()
    title = serializers.CharField()
    text = serializers.CharField()
    author = serializers.CharField()
    language = serializers.CharField()
    published_at = serializers.DateTimeField(allow_null=True)
    received_at = serializers.DateTimeField()
    topic = serializers.CharField()
    topic_probability = serializers.FloatField(allow_null=True)
    sentiment = serializers.CharField()
    sentiment_probabilities = serializers.DictField(allow_null=True)
    score = serializers.FloatField(allow_null=True, help_text="P(positive) - P(negative)")
    classified_at = serializers.DateTimeField(allow_null=True, help_text="null: waiting for classification")
    corrected_topic = serializers.CharField(help_text="an analyst's topic ('' if not corrected)")
    corrected_sentiment = serializers.CharField(help_text="an analyst's sentiment ('' if not corrected)")
    corrected_at = serializers.DateTimeField(allow_null=True)
    model_answer = serializers.DictField(
        allow_null=True, help_text="the model's classification before the first correction"
    )
    duplicate_of = serializers.IntegerField(
        source="duplicate_of_id", allow_null=True, help_text="a copy's original (null: an original)"
    )
    copies = serializers.IntegerField(help_text="how many copies of this original are stored")


class OutcomeOut(serializers.Serializer):
    index = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["created", "existing", "duplicate", "rejected"])
    document_id = serializers.IntegerField(
        allow_null=True, help_text="a duplicate's: its stored copy, if any"
    )
    duplicate_of = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()
    copy = serializers.BooleanField(help_text="a duplicate stored as a copy of duplicate_of")


class DuplicateOut(serializers.Serializer):
    """A pushed document whose text is another's (stored as its copy, ``id``) or whose url is already stored
    (nothing new kept, ``id`` null)."""

    status = serializers.ChoiceField(choices=["duplicate"])
    duplicate_of = serializers.IntegerField()
    reason = serializers.CharField()
    id = serializers.IntegerField(allow_null=True, help_text="the stored copy (null: same url, not stored)")


# 200 answers either the stored document (same client id sent again) or that the text duplicates another.
DOCUMENT_OR_DUPLICATE = PolymorphicProxySerializer(
    component_name="DocumentOrDuplicate",
    serializers=[DocumentOut, DuplicateOut],
    resource_type_field_name=None,
)


class BatchOut(serializers.Serializer):
    counts = serializers.DictField(child=serializers.IntegerField())
    results = OutcomeOut(many=True)


def _copy_of(request) -> int | None:
    """``copy_of``: an original of the organisation (another's, or none, is a 404)."""
    original_id = _query_int(request, "copy_of")
    if original_id is not None and not selectors.document_get(
        organisation=request.organisation, document_id=original_id
    ):
        raise NotFound("No such document.")
    return original_id


class DocumentListView(APIView):
    """List with filters (topic, sentiment, source, entity, since, until, q, classified,
    copies=hide|show|only, copy_of); push one."""

    pagination_class = Pagination
    permissions = {"GET": "org.view", "POST": "monitor.ingest"}

    @extend_schema(responses=DocumentOut(many=True))
    def get(self, request):
        found = selectors.document_list(
            organisation=request.organisation,
            topic=request.query_params.get("topic", ""),
            sentiment=query_choice(request, "sentiment", Sentiment.values) or "",
            source_id=_query_int(request, "source"),
            entity_id=_query_int(request, "entity"),
            since=_query_time(request, "since"),
            until=_query_time(request, "until"),
            q=request.query_params.get("q", "")[:200],
            classified={"true": True, "false": False, None: None}[
                query_choice(request, "classified", ["true", "false"])
            ],
            copies=query_choice(request, "copies", selectors.COPIES) or "hide",
            copy_of=_copy_of(request),
        )
        return paginate(self, request, found, DocumentOut)

    @extend_schema(request=DocumentIn, responses={201: DocumentOut, 200: DOCUMENT_OR_DUPLICATE})
    @idempotent
    def post(self, request):
        item = _document_in(_valid(DocumentIn, request))
        result = docs.documents_ingest(organisation=request.organisation, items=[item], strict=True)
        outcome = result.outcomes[0]
        if outcome.status == "duplicate":
            return Response(
                {
                    "status": "duplicate",
                    "duplicate_of": outcome.duplicate_of,
                    "reason": outcome.reason,
                    "id": outcome.document_id,
                },
                status=status.HTTP_200_OK,
            )
        document = selectors.document_get(organisation=request.organisation, document_id=outcome.document_id)
        code = status.HTTP_201_CREATED if outcome.status == "created" else status.HTTP_200_OK
        return Response(DocumentOut(document).data, status=code)


class DocumentBatchView(APIView):
    """Up to 1,000 documents; each comes back created, existing (same id), duplicate or rejected."""

    permissions = {"POST": "monitor.ingest"}

    @extend_schema(request=BatchIn, responses={200: BatchOut})
    @idempotent
    def post(self, request):
        raw = _valid(BatchIn, request)["documents"]
        items: list[docs.DocumentIn | None] = []
        rejected: dict[int, str] = {}
        one = DocumentIn()  # one serializer validates every entry, as a ``many=True`` list does: a serializer
        # per entry copied its fields each time (a tenth of a batch's time)
        for index, entry in enumerate(raw):
            one.initial_data = entry  # what ``validate_published_at`` reads
            try:
                items.append(_document_in(one.run_validation(entry)))
            except ValidationError as exc:
                field, errors = next(iter(as_serializer_error(exc).items()))
                rejected[index] = f"{field}: {errors[0]}"
                items.append(None)
        valid = [(i, item) for i, item in enumerate(items) if item is not None]
        result = docs.documents_ingest(organisation=request.organisation, items=[item for _, item in valid])
        outcomes = [docs.Outcome(i, "rejected", reason=r) for i, r in rejected.items()]
        for outcome in result.outcomes:
            outcome.index = valid[outcome.index][0]
            outcomes.append(outcome)
        outcomes.sort(key=lambda o: o.index)
        body = docs.BatchResult(outcomes)
        return Response({"counts": body.counts(), "results": [asdict(o) for o in outcomes]})


class DocumentDetailView(APIView):
    permissions = {"GET": "org.view"}

    @extend_schema(responses=DocumentOut)
    def get(self, request, document_id: int):
        document = selectors.document_get(organisation=request.organisation, document_id=document_id)
        if document is None:
            raise NotFound("No such document.")
        return Response(DocumentOut(document).data)


class DocumentCorrectIn(StrictSerializer):
    topic = serializers.CharField(max_length=100, required=False, allow_blank=False)
    sentiment = serializers.ChoiceField(choices=Sentiment.choices, required=False)


class DocumentCorrectView(APIView):
    """An analyst's topic and/or sentiment for a document: moves the trend counts, keeps the model's."""

    permissions = {"POST": "monitor.correct"}

    @extend_schema(request=DocumentCorrectIn, responses=DocumentOut)
    def post(self, request, document_id: int):
        data = _valid(DocumentCorrectIn, request)
        document = corrections.document_correct(
            organisation=request.organisation,
            document_id=document_id,
            topic=data.get("topic"),
            sentiment=data.get("sentiment"),
        )
        return Response(DocumentOut(document).data)


class UploadIn(StrictSerializer):
    file = serializers.FileField()
    source = serializers.CharField(max_length=120, required=False, default="")


class RejectedRowOut(serializers.Serializer):
    line = serializers.IntegerField()
    reason = serializers.CharField()


class UploadOut(serializers.Serializer):
    rows = serializers.IntegerField()
    created = serializers.IntegerField()
    existing = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = RejectedRowOut(many=True)


class DocumentUploadView(APIView):
    """A CSV or JSONL file of documents (columns: text, title, url, author, language, published_at, id)."""

    permissions = {"POST": "monitor.ingest"}
    parser_classes = [MultiPartParser]

    @extend_schema(request=UploadIn, responses={201: UploadOut})
    def post(self, request):
        data = _valid(UploadIn, request)
        result = uploads.documents_upload(
            organisation=request.organisation,
            data=data["file"].read(),
            filename=data["file"].name or "",
            source_name=data["source"],
        )
        return Response(asdict(result), status=status.HTTP_201_CREATED)


# --- sources ------------------------------------------------------------------------------------------


class SourceOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    feed_url = serializers.CharField()
    poll_interval_s = serializers.IntegerField()
    enabled = serializers.BooleanField()
    last_polled_at = serializers.DateTimeField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    last_document_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    last_error_at = serializers.DateTimeField(allow_null=True)
    consecutive_failures = serializers.IntegerField()
    health = serializers.SerializerMethodField()

    def get_health(self, source) -> dict:
        health = selectors.source_health(source=source)
        return {
            "status": health.status,
            "warning": health.warning,
            "documents_per_day": [{"day": d, "documents": n} for d, n in health.documents_per_day],
        }


class FeedIn(StrictSerializer):
    name = text_field(max_length=120)
    feed_url = serializers.URLField(max_length=2000)
    poll_interval_s = serializers.IntegerField(min_value=feeds.MIN_POLL_INTERVAL_S, default=900)


class SourcePatchIn(StrictSerializer):
    enabled = serializers.BooleanField(required=False)
    poll_interval_s = serializers.IntegerField(min_value=feeds.MIN_POLL_INTERVAL_S, required=False)
    quiet_after_s = serializers.IntegerField(min_value=600, required=False)


class PollOut(serializers.Serializer):
    id = serializers.IntegerField()
    outcome = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()
    bytes_read = serializers.IntegerField()
    entries = serializers.IntegerField()
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    duration_ms = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class SourceListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "org.view", "POST": "monitor.manage"}

    @extend_schema(responses=SourceOut(many=True))
    def get(self, request):
        return paginate(self, request, selectors.source_list(organisation=request.organisation), SourceOut)

    @extend_schema(request=FeedIn, responses={201: SourceOut})
    def post(self, request):
        source = feeds.feed_create(organisation=request.organisation, **_valid(FeedIn, request))
        return Response(SourceOut(source).data, status=status.HTTP_201_CREATED)


def _source(request, source_id: int):
    source = selectors.source_get(organisation=request.organisation, source_id=source_id)
    if source is None:
        raise NotFound("No such source.")
    return source


class SourceDetailView(APIView):
    permissions = {"GET": "org.view", "PATCH": "monitor.manage", "DELETE": "monitor.manage"}

    @extend_schema(responses=SourceOut)
    def get(self, request, source_id: int):
        return Response(SourceOut(_source(request, source_id)).data)

    @extend_schema(request=SourcePatchIn, responses=SourceOut)
    def patch(self, request, source_id: int):
        source = feeds.source_update(source=_source(request, source_id), **_valid(SourcePatchIn, request))
        return Response(SourceOut(source).data)

    @extend_schema(responses=None)
    def delete(self, request, source_id: int):
        feeds.source_delete(source=_source(request, source_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class SourcePollsView(APIView):
    permissions = {"GET": "org.view"}

    @extend_schema(responses=PollOut(many=True))
    def get(self, request, source_id: int):
        source = _source(request, source_id)
        polls = selectors.source_polls(organisation=request.organisation, source_id=source.pk)
        return Response(PollOut(polls, many=True).data)


class PollQueuedOut(serializers.Serializer):
    source = serializers.IntegerField()
    status = serializers.CharField(help_text="queued")
    polls = serializers.CharField(help_text="the source's poll history, where the outcome appears")


class SourcePollNowView(APIView):
    """Poll a feed soon, on a worker: 202, and the outcome appears in the source's poll history (``polls``);
    beat polls it on its schedule anyway."""

    permissions = {"POST": "monitor.manage"}

    @extend_schema(request=None, responses={202: PollQueuedOut})
    def post(self, request, source_id: int):
        source = _source(request, source_id)
        feeds.feed_poll_enqueue(source=source)
        polls = reverse("api-fm-source-polls", kwargs={"source_id": source.pk})
        body = {"source": source.pk, "status": "queued", "polls": polls}
        return Response(PollQueuedOut(body).data, status=status.HTTP_202_ACCEPTED)


# --- watch-list ---------------------------------------------------------------------------------------


class EntityOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    name = serializers.CharField()
    ticker = serializers.CharField()
    aliases = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()


class EntityIn(StrictSerializer):
    kind = serializers.ChoiceField(choices=EntityKind.choices)
    name = text_field(max_length=200)
    ticker = serializers.CharField(max_length=13, required=False, default="", allow_blank=True)
    aliases = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, default=list, max_length=50
    )


class EntityListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "org.view", "POST": "monitor.manage"}

    @extend_schema(responses=EntityOut(many=True))
    def get(self, request):
        return paginate(self, request, selectors.entity_list(organisation=request.organisation), EntityOut)

    @extend_schema(request=EntityIn, responses={201: EntityOut})
    def post(self, request):
        entity = entities.entity_save(organisation=request.organisation, **_valid(EntityIn, request))
        return Response(EntityOut(entity).data, status=status.HTTP_201_CREATED)


def _entity(request, entity_id: int):
    entity = selectors.entity_get(organisation=request.organisation, entity_id=entity_id)
    if entity is None:
        raise NotFound("No such watch-list entry.")
    return entity


class EntityDetailView(APIView):
    permissions = {"GET": "org.view", "PUT": "monitor.manage", "DELETE": "monitor.manage"}

    @extend_schema(responses=EntityOut)
    def get(self, request, entity_id: int):
        return Response(EntityOut(_entity(request, entity_id)).data)

    @extend_schema(request=EntityIn, responses=EntityOut)
    def put(self, request, entity_id: int):
        entity = entities.entity_save(
            organisation=request.organisation, entity=_entity(request, entity_id), **_valid(EntityIn, request)
        )
        return Response(EntityOut(entity).data)

    @extend_schema(responses=None)
    def delete(self, request, entity_id: int):
        entities.entity_delete(entity=_entity(request, entity_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- trends -------------------------------------------------------------------------------------------


class TrendPointOut(serializers.Serializer):
    bucket_start = serializers.DateTimeField()
    volume = serializers.IntegerField()
    negative = serializers.IntegerField()
    neutral = serializers.IntegerField()
    positive = serializers.IntegerField()
    negative_share = serializers.FloatField()
    positive_share = serializers.FloatField()
    mean_score = serializers.FloatField()


class TrendView(APIView):
    """``?dimension=all|topic|entity&key=<topic or entry id>&granularity=hour|day&since=&until=``."""

    permissions = {"GET": "org.view"}

    @extend_schema(responses=TrendPointOut(many=True))
    def get(self, request):
        from datetime import timedelta

        from django.utils import timezone

        from finance_monitor.services import trends

        until = _query_time(request, "until") or timezone.now()
        since = _query_time(request, "since") or until - timedelta(days=7)
        dimension = query_choice(request, "dimension", ["all", "topic", "entity"]) or "all"
        key = request.query_params.get("key", "")
        if (
            dimension == "entity"
            and selectors.entity_get(organisation=request.organisation, entity_id=_id_value(key) or 0) is None
        ):
            raise NotFound("No such watch-list entry.")
        series = trends.trend_series(
            organisation=request.organisation,
            dimension=dimension,
            key=key,
            granularity=query_choice(request, "granularity", ["hour", "day"]) or "hour",
            since=since,
            until=until,
        )
        return Response(TrendPointOut(series, many=True).data)


# --- classification models ----------------------------------------------------------------------------


class MonitorModelOut(serializers.Serializer):
    id = serializers.IntegerField()
    version = serializers.IntegerField()
    method = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField())
    metrics = serializers.DictField()


class ClassificationOut(serializers.Serializer):
    pending = serializers.IntegerField(help_text="documents waiting for classification")
    corrected = serializers.IntegerField(help_text="documents an analyst corrected")
    topic = MonitorModelOut(allow_null=True, help_text="the active topic model")
    sentiment = MonitorModelOut(allow_null=True, help_text="the active sentiment model")
    default_jobs = JobOut(many=True, help_text="trainings of the default models, latest first")


class JobsOut(serializers.Serializer):
    jobs = JobOut(many=True)


class RetrainIn(StrictSerializer):
    task = serializers.ChoiceField(
        choices=corrections.TASKS, required=False, help_text="one task; both when left out"
    )


class ClassificationView(APIView):
    """Active topic and sentiment models, pending and corrected documents, default trainings."""

    permissions = {"GET": "org.view"}

    @extend_schema(responses=ClassificationOut)
    def get(self, request):
        return Response(
            ClassificationOut(selectors.classification_status(organisation=request.organisation)).data
        )


class DefaultModelsView(APIView):
    """Train the default topic and sentiment models (from the shipped twitter financial news sets) for each
    task without an active model; not counted against the training-job quota."""

    permissions = {"POST": "models.train"}

    @extend_schema(request=None, responses={202: JobsOut})
    def post(self, request):
        queued = defaults.monitor_defaults_install(
            organisation=request.organisation, created_by=request.user if request.user.pk else None
        )
        return Response({"jobs": JobOut(queued, many=True).data}, status=status.HTTP_202_ACCEPTED)


class RetrainView(APIView):
    """Retrain the topic and/or sentiment model with the analysts' corrections (retrain-from-feedback); the
    promotion rule decides whether each new model replaces the active one."""

    permissions = {"POST": "models.train"}

    @extend_schema(request=RetrainIn, responses={202: JobsOut})
    def post(self, request):
        task = _valid(RetrainIn, request).get("task")
        queued = corrections.corrections_retrain(
            organisation=request.organisation,
            tasks=(task,) if task else corrections.TASKS,
            created_by=request.user if request.user.pk else None,
        )
        return Response({"jobs": JobOut(queued, many=True).data}, status=status.HTTP_202_ACCEPTED)
