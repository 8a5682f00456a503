"""The recommender over the REST API (``/api/recommender/``): validate, one service or selector, serialize."""

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.pagination import Pagination
from core.api.serializers import StrictSerializer
from core.api.views import paginate
from core.errors import InvalidInput, NotFound
from recommender import selectors
from recommender.services import catalogue, diversity, events, experiments, serving, training, tuning
from recommender.services.rows import MAX_BATCH


def _valid(serializer_class, request):
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    return data.validated_data


def _api_key(request):
    return request.auth if request.user.pk is None else None


def _int(params: Mapping[str, str], name: str, default: int) -> int:
    value = params.get(name)
    if value in (None, ""):
        return default
    digits = value.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):  # "²".isdigit() is True and int("²") fails; so does "--1"
        raise InvalidInput(f"{name} must be a whole number.", details={"field": name})
    return int(value)


def _price(params: Mapping[str, str], name: str) -> Decimal | None:
    value = params.get(name)
    if value in (None, ""):
        return None
    try:
        price = Decimal(value)
    except InvalidOperation:
        raise InvalidInput(f"{name} must be a number.", details={"field": name}) from None
    if not price.is_finite():
        raise InvalidInput(f"{name} must be a finite number.", details={"field": name})
    return price


def _flag(params: Mapping[str, str], name: str, default: bool) -> bool:
    value = params.get(name)
    if value in (None, ""):
        return default
    if value.lower() not in ("true", "false", "1", "0"):
        raise InvalidInput(f"{name} must be true or false.", details={"field": name})
    return value.lower() in ("true", "1")


def _ids(value: str | None, name: str, limit: int) -> list[str]:
    ids = [part.strip() for part in (value or "").split(",") if part.strip()]
    if len(ids) > limit:
        raise InvalidInput(f"{name} takes at most {limit} ids.", details={"field": name})
    return ids


def _filters(params: Mapping[str, str]) -> serving.Filters:
    limit = None
    if params.get("max_per_category") not in (None, ""):
        limit = _int(params, "max_per_category", 0)
        diversity.check_max_per_category(limit, allow_zero=True)
    return serving.Filters(
        max_per_category=limit,
        category=(params.get("category") or None),
        min_price=_price(params, "min_price"),
        max_price=_price(params, "max_price"),
        available_only=_flag(params, "available_only", True),
        exclude=frozenset(_ids(params.get("exclude"), "exclude", serving.MAX_EXCLUDE)),
    )


FILTER_PARAMETERS = [
    OpenApiParameter("k", int, description="how many items (1 to 100; default 10)"),
    OpenApiParameter("category", str, description="only items in this category"),
    OpenApiParameter("min_price", float),
    OpenApiParameter("max_price", float),
    OpenApiParameter("available_only", bool, description="default true"),
    OpenApiParameter("exclude", str, description="comma-separated item ids never to return"),
    OpenApiParameter(
        "max_per_category",
        int,
        description="at most this many items of any one category (0: no limit; default: the organisation's)",
    ),
]


# --- catalogue ------------------------------------------------------------------------------------------


class ItemOut(serializers.Serializer):
    id = serializers.CharField(source="external_id")
    title = serializers.CharField()
    description = serializers.CharField()
    categories = serializers.ListField(child=serializers.CharField())
    price = serializers.DecimalField(max_digits=14, decimal_places=4, allow_null=True)
    available = serializers.BooleanField()
    expires_at = serializers.DateTimeField(allow_null=True)
    attributes = serializers.DictField()
    updated_at = serializers.DateTimeField()


class RejectionOut(serializers.Serializer):
    index = serializers.IntegerField(help_text="position in the batch (0-based), or the file's line")
    reason = serializers.CharField()


class IngestOut(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    existing = serializers.IntegerField()
    rejected = RejectionOut(many=True)


class ItemsBatchIn(StrictSerializer):
    items = serializers.ListField(
        child=serializers.JSONField(),
        min_length=1,
        max_length=MAX_BATCH,
        help_text="objects: id, title, description, categories, price, available, expires_at, attributes, "
        "deleted",
    )


class EventsBatchIn(StrictSerializer):
    events = serializers.ListField(
        child=serializers.JSONField(),
        min_length=1,
        max_length=MAX_BATCH,
        help_text="objects: id, user, item, type, value, occurred_at",
    )


class CatalogueUploadIn(StrictSerializer):
    file = serializers.FileField()


class ItemListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "org.view"}

    @extend_schema(responses=ItemOut(many=True))
    def get(self, request):
        return paginate(self, request, selectors.item_list(organisation=request.organisation), ItemOut)


class ItemDetailView(APIView):
    permissions = {"GET": "org.view"}

    @extend_schema(responses=ItemOut)
    def get(self, request, item_id: str):
        item = selectors.item_get(organisation=request.organisation, external_id=item_id)
        if item is None:
            raise NotFound("No such item.")
        return Response(ItemOut(item).data)


class ItemBatchView(APIView):
    """Create or update up to 1,000 items by their id; bad rows come back rejected with a reason."""

    permissions = {"POST": "recommender.ingest"}

    @extend_schema(request=ItemsBatchIn, responses={200: IngestOut})
    def post(self, request):
        rows = _valid(ItemsBatchIn, request)["items"]
        return Response(catalogue.items_upsert(organisation=request.organisation, rows=rows).as_dict())


class ItemUploadView(APIView):
    """A CSV or JSONL file of items (CSV: categories separated by |, attributes as JSON)."""

    permissions = {"POST": "recommender.ingest"}
    parser_classes = [MultiPartParser]

    @extend_schema(request=CatalogueUploadIn, responses={200: IngestOut})
    def post(self, request):
        upload = _valid(CatalogueUploadIn, request)["file"]
        result = catalogue.items_upload(
            organisation=request.organisation, data=upload.read(), filename=upload.name or ""
        )
        return Response(result.as_dict())


# --- behaviour ------------------------------------------------------------------------------------------


class EventBatchView(APIView):
    """Up to 1,000 events; idempotent by event id; events for unknown items are rejected per row."""

    permissions = {"POST": "recommender.ingest"}

    @extend_schema(request=EventsBatchIn, responses={200: IngestOut})
    def post(self, request):
        rows = _valid(EventsBatchIn, request)["events"]
        return Response(events.events_ingest(organisation=request.organisation, rows=rows).as_dict())


class EventUploadView(APIView):
    permissions = {"POST": "recommender.ingest"}
    parser_classes = [MultiPartParser]

    @extend_schema(request=CatalogueUploadIn, responses={200: IngestOut})
    def post(self, request):
        upload = _valid(CatalogueUploadIn, request)["file"]
        result = events.events_upload(
            organisation=request.organisation, data=upload.read(), filename=upload.name or ""
        )
        return Response(result.as_dict())


class WeightsIn(StrictSerializer):
    weights = serializers.DictField(child=serializers.JSONField())


class WeightsView(APIView):
    permissions = {"GET": "org.view", "PUT": "recommender.manage"}

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response({"weights": events.event_weights(organisation=request.organisation)})

    @extend_schema(request=WeightsIn, responses={200: OpenApiTypes.OBJECT})
    def put(self, request):
        weights = _valid(WeightsIn, request)["weights"]
        return Response(
            {"weights": events.event_weights_set(organisation=request.organisation, weights=weights)}
        )


# --- training and serving -------------------------------------------------------------------------------


class RecommenderTrainIn(StrictSerializer):
    config = serializers.DictField(
        required=False, default=None, allow_null=True, help_text="method: popularity | itemknn | ease, ..."
    )


class TrainView(APIView):
    permissions = {"POST": "models.train"}

    @extend_schema(request=RecommenderTrainIn, responses={202: OpenApiTypes.OBJECT})
    def post(self, request):
        config = _valid(RecommenderTrainIn, request)["config"]
        job = training.recommender_train_start(
            organisation=request.organisation,
            config=config,
            created_by=request.user if request.user.pk else None,
        )
        return Response({"job": job.pk, "status": job.status}, status=202)


class ItemTextTuneView(APIView):
    """Tune the catalogue's text model on behaviour (a LoRA adapter on the shared encoder): a training job
    that builds its pairs from the events first (with too few, the job fails with the count)."""

    permissions = {"POST": "models.train"}

    @extend_schema(request=None, responses={202: OpenApiTypes.OBJECT})
    def post(self, request):
        job = tuning.item_text_tune_start(
            organisation=request.organisation, created_by=request.user if request.user.pk else None
        )
        return Response({"job": job.pk, "status": job.status}, status=202)


class ServedReasonOut(serializers.Serializer):
    kind = serializers.CharField(
        help_text="items, next, text, new, tower, rising, trend, popular, boost or catalogue (see the README)"
    )
    detail = serializers.CharField(help_text="the reason in words")
    items = serializers.ListField(
        child=serializers.CharField(), help_text="the history items it names (empty for a global reason)"
    )


class RecommendedOut(serializers.Serializer):
    id = serializers.CharField()
    title = serializers.CharField()
    score = serializers.FloatField()
    categories = serializers.ListField(child=serializers.CharField())
    price = serializers.CharField(allow_null=True)
    why = serializers.ListField(child=serializers.CharField(), help_text="the history items that drove it")
    why_words = serializers.ListField(
        child=serializers.CharField(), help_text="the words its title shares with the titles of those items"
    )
    reason = ServedReasonOut(help_text="the part of the model's score that contributed most; never empty")


class ServedExperimentOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    arm = serializers.CharField(help_text="A or B")


class RecommendationsOut(serializers.Serializer):
    user = serializers.CharField(allow_null=True)
    session = serializers.CharField(allow_null=True, required=False)
    history_items = serializers.IntegerField()
    experiment = ServedExperimentOut(allow_null=True, help_text="the running experiment and the arm served")
    model_version = serializers.IntegerField(allow_null=True)
    version = serializers.IntegerField(allow_null=True)
    method = serializers.CharField()
    items = RecommendedOut(many=True)


class SimilarOut(serializers.Serializer):
    item = serializers.CharField()
    experiment = ServedExperimentOut(allow_null=True, help_text="always null: similar items are not tested")
    model_version = serializers.IntegerField(allow_null=True)
    version = serializers.IntegerField(allow_null=True)
    method = serializers.CharField()
    items = RecommendedOut(many=True)


class RecommendationsView(APIView):
    """Top-k for a user (``user``) or an anonymous session (``items``: the items it saw)."""

    permissions = {"GET": "models.predict"}

    @extend_schema(
        parameters=[
            OpenApiParameter("user", str, description="the user's id (or give items)"),
            OpenApiParameter("items", str, description="comma-separated item ids of an anonymous session"),
            OpenApiParameter(
                "session", str, description="the anonymous session's id (assigns it to an experiment's arm)"
            ),
            OpenApiParameter("exclude_purchased", bool, description="default true"),
            *FILTER_PARAMETERS,
        ],
        responses=RecommendationsOut,
    )
    def get(self, request):
        return Response(
            recommendations_answer(
                organisation=request.organisation, api_key=_api_key(request), params=request.query_params
            )
        )


class SimilarView(APIView):
    permissions = {"GET": "models.predict"}

    @extend_schema(parameters=FILTER_PARAMETERS, responses=SimilarOut)
    def get(self, request, item_id: str):
        return Response(
            similar_answer(
                organisation=request.organisation,
                api_key=_api_key(request),
                item_id=item_id,
                params=request.query_params,
            )
        )


def recommendations_answer(*, organisation, api_key, params: Mapping[str, str]) -> dict[str, Any]:
    """``GET recommendations``' answer from its query parameters: the DRF view and the fast route
    (``product.FAST_ROUTES``, served below Django for an ordinary API-key call) both answer with it."""
    user = (params.get("user") or "").strip()
    items = _ids(params.get("items"), "items", serving.MAX_SESSION_ITEMS)
    k, filters = _int(params, "k", 10), _filters(params)
    if bool(user) == bool(items):
        raise InvalidInput("Give either user or items (a session's item ids).", details={"field": "user"})
    if user:
        if len(user) > 200:
            raise InvalidInput("user takes at most 200 characters.", details={"field": "user"})
        return serving.recommendations_for_user(
            organisation=organisation,
            user=user,
            k=k,
            filters=filters,
            exclude_purchased=_flag(params, "exclude_purchased", True),
            api_key=api_key,
        )
    session = (params.get("session") or "").strip()
    if len(session) > 200:
        raise InvalidInput("session takes at most 200 characters.", details={"field": "session"})
    return serving.recommendations_for_session(
        organisation=organisation,
        items=items,
        session=session or None,
        k=k,
        filters=filters,
        api_key=api_key,
    )


def similar_answer(*, organisation, api_key, item_id: str, params: Mapping[str, str]) -> dict[str, Any]:
    """``GET items/<id>/similar``' answer (the DRF view and the fast route)."""
    return serving.items_similar(
        organisation=organisation,
        external_id=item_id,
        k=_int(params, "k", 10),
        filters=_filters(params),
        api_key=api_key,
    )


# --- diversity and experiments --------------------------------------------------------------------------


class DiversityIn(StrictSerializer):
    max_per_category = serializers.IntegerField(allow_null=True, help_text="1 to 100, or null for no limit")


class DiversityView(APIView):
    """The organisation's default limit of items per category in an answer (a request's
    ``max_per_category`` overrides it)."""

    permissions = {"GET": "org.view", "PUT": "recommender.manage"}

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request):
        return Response({"max_per_category": diversity.diversity_get(organisation=request.organisation)})

    @extend_schema(request=DiversityIn, responses={200: OpenApiTypes.OBJECT})
    def put(self, request):
        value = _valid(DiversityIn, request)["max_per_category"]
        limit = diversity.diversity_set(organisation=request.organisation, max_per_category=value)
        return Response({"max_per_category": limit})


class ExperimentIn(StrictSerializer):
    name = serializers.CharField(max_length=120)
    version_a = serializers.IntegerField(help_text="a model version id of your recommender (ready or active)")
    version_b = serializers.IntegerField(help_text="another one")
    share_b = serializers.FloatField(required=False, default=0.5, help_text="share of users on B, 0.01-0.99")
    window_hours = serializers.IntegerField(
        required=False, default=24, help_text="how long after an answer its feedback counts (1-720)"
    )


class ExperimentOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    version_a = serializers.IntegerField(source="version_a_id")
    version_b = serializers.IntegerField(source="version_b_id")
    share_b = serializers.FloatField()
    window_hours = serializers.IntegerField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)


class ExperimentListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "org.view", "POST": "recommender.manage"}

    @extend_schema(responses=ExperimentOut(many=True))
    def get(self, request):
        found = experiments.experiment_list(organisation=request.organisation)
        return paginate(self, request, found, ExperimentOut)

    @extend_schema(request=ExperimentIn, responses={201: ExperimentOut})
    def post(self, request):
        data = _valid(ExperimentIn, request)
        made = experiments.experiment_create(organisation=request.organisation, **data)
        return Response(ExperimentOut(made).data, status=201)


class ExperimentDetailView(APIView):
    permissions = {"GET": "org.view"}

    @extend_schema(responses=ExperimentOut)
    def get(self, request, experiment_id: int):
        found = experiments.experiment_get(organisation=request.organisation, experiment_id=experiment_id)
        return Response(ExperimentOut(found).data)


class ExperimentStartView(APIView):
    """Start a draft experiment (409 while another one runs)."""

    permissions = {"POST": "recommender.manage"}

    @extend_schema(request=None, responses=ExperimentOut)
    def post(self, request, experiment_id: int):
        started = experiments.experiment_start(organisation=request.organisation, experiment_id=experiment_id)
        return Response(ExperimentOut(started).data)


class ExperimentStopView(APIView):
    permissions = {"POST": "recommender.manage"}

    @extend_schema(request=None, responses=ExperimentOut)
    def post(self, request, experiment_id: int):
        stopped = experiments.experiment_stop(organisation=request.organisation, experiment_id=experiment_id)
        return Response(ExperimentOut(stopped).data)


class ExperimentResultsView(APIView):
    """Per arm: impressions, click-through and conversion with Wilson 95% intervals; B - A with Newcombe's
    interval."""

    permissions = {"GET": "org.view"}

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, experiment_id: int):
        results = experiments.experiment_results(
            organisation=request.organisation, experiment_id=experiment_id
        )
        return Response({**results, "experiment": ExperimentOut(results["experiment"]).data})
