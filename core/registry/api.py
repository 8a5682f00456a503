"""Datasets, model versions and predictions over the API. Validate -> one service -> serialize."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.fields import NOT_BLANK, text_field
from core.api.idempotency import IDEMPOTENCY_KEY_PARAMETER, idempotent
from core.api.pagination import Pagination
from core.api.serializers import JobOut, StrictSerializer
from core.api.views import paginate
from core.errors import InvalidInput, NotFound
from core.registry import selectors, services
from core.registry.batch import batch_predict_start
from core.registry.files import dataset_report_response
from core.registry.paths import TASK_PATTERN, model_apps


class DatasetOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    task = serializers.CharField()
    version = serializers.IntegerField()
    fingerprint = serializers.CharField()
    row_count = serializers.IntegerField()
    rejected_count = serializers.IntegerField()
    labels = serializers.ListField(child=serializers.CharField())
    split_counts = serializers.DictField()
    source_filename = serializers.CharField()
    shipped = serializers.BooleanField()  # the product's own rows: not counted in the stored records
    created_at = serializers.DateTimeField()


class DatasetIn(StrictSerializer):
    name = text_field(max_length=120)
    task = serializers.ChoiceField(choices=["classification", "pairs"])
    file = serializers.FileField()


class ModelOut(serializers.Serializer):
    id = serializers.IntegerField()
    app = serializers.CharField()
    task = serializers.CharField()
    version = serializers.IntegerField()
    status = serializers.CharField()
    method = serializers.CharField()
    labels = serializers.ListField(child=serializers.CharField())
    metrics = serializers.DictField()
    quantized = serializers.BooleanField()
    quantization = serializers.DictField()
    data_fingerprint = serializers.CharField()
    promotion_note = serializers.CharField()
    promoted_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class TrainIn(StrictSerializer):
    dataset = serializers.IntegerField(min_value=1)
    app = serializers.ChoiceField(choices=[], help_text="an installed product")
    task = serializers.RegexField(TASK_PATTERN, max_length=50, help_text="a slug, e.g. intent")
    config = serializers.DictField(required=False, allow_null=True, default=None)
    search = serializers.DictField(required=False, allow_null=True, default=None)
    follow_up = serializers.DictField(required=False, allow_null=True, default=None)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["app"].choices = model_apps()  # from the app registry, read once it is ready


class PredictIn(StrictSerializer):
    texts = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, validators=[NOT_BLANK]),
        allow_empty=False,
        max_length=services.MAX_PREDICT_TEXTS,
    )


class PredictionOut(serializers.Serializer):
    label = serializers.CharField()
    probabilities = serializers.DictField(child=serializers.FloatField(), help_text="per label, summing to 1")
    in_scope = serializers.FloatField(
        allow_null=True,
        help_text="0 to 1: how much the text looks like the labels' training questions (0.5: as unlike "
        "them as the least typical 5% of held-out ones); the support bot's thresholds read it; null for "
        "versions trained without it",
    )
    version = serializers.IntegerField()


class PredictOut(serializers.Serializer):
    model_version = serializers.IntegerField(help_text="the model version's id")
    version = serializers.IntegerField(help_text="its number within app/task")
    predictions = PredictionOut(many=True, help_text="one per text, in order")


class EmbedOut(serializers.Serializer):
    model_version = serializers.IntegerField(help_text="the model version's id")
    version = serializers.IntegerField(help_text="its number within app/task")
    dim = serializers.IntegerField()
    embeddings = serializers.ListField(
        child=serializers.ListField(child=serializers.FloatField()), help_text="one unit vector per text"
    )


class PromoteIn(StrictSerializer):
    force = serializers.BooleanField(default=False)


class RollbackIn(StrictSerializer):
    app = serializers.CharField(max_length=32)
    task = serializers.CharField(max_length=64)


class DatasetListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "org.view", "POST": "models.train"}
    parser_classes = [MultiPartParser]

    @extend_schema(responses=DatasetOut(many=True))
    def get(self, request):
        return paginate(self, request, selectors.dataset_list(organisation=request.organisation), DatasetOut)

    @extend_schema(request=DatasetIn, responses={201: DatasetOut})
    def post(self, request):
        data = DatasetIn(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        dataset = services.dataset_upload(
            organisation=request.organisation,
            name=data.validated_data["name"],
            task=data.validated_data["task"],
            data=upload.read(),
            filename=upload.name,
        )
        return Response(DatasetOut(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailView(APIView):
    @extend_schema(responses=DatasetOut)
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get(organisation=request.organisation, dataset_id=dataset_id)
        if dataset is None:
            raise NotFound("No such dataset.")
        return Response(DatasetOut(dataset).data)


class DatasetReportView(APIView):
    @extend_schema(responses={(200, "text/csv"): bytes})
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get(organisation=request.organisation, dataset_id=dataset_id)
        if dataset is None:
            raise NotFound("No such dataset.")
        return dataset_report_response(dataset)


class ModelListView(APIView):
    pagination_class = Pagination

    @extend_schema(
        responses=ModelOut(many=True),
        parameters=[
            OpenApiParameter("app", str, description="only models of this product, e.g. core"),
            OpenApiParameter("task", str, description="only models of this task"),
        ],
    )
    def get(self, request):
        qs = selectors.model_list(
            organisation=request.organisation, app=request.GET.get("app"), task=request.GET.get("task")
        )
        return paginate(self, request, qs, ModelOut)


class ModelDetailView(APIView):
    @extend_schema(responses=ModelOut)
    def get(self, request, version_id: int):
        version = selectors.model_get(organisation=request.organisation, version_id=version_id)
        if version is None:
            raise NotFound("No such model version.")
        return Response(ModelOut(version).data)


class TrainView(APIView):
    permissions = {"POST": "models.train"}

    @extend_schema(request=TrainIn, responses={201: JobOut})
    def post(self, request):
        data = TrainIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        job = services.model_train_start(
            organisation=request.organisation,
            dataset_id=v["dataset"],
            app=v["app"],
            task=v["task"],
            config=v["config"],
            search=v["search"],
            follow_up=v["follow_up"],
            created_by=request.user if request.user.pk else None,
        )
        return Response(JobOut(job).data, status=status.HTTP_201_CREATED)


class PredictView(APIView):
    permissions = {"POST": "models.predict"}

    @extend_schema(request=PredictIn, responses=PredictOut, parameters=[IDEMPOTENCY_KEY_PARAMETER])
    @idempotent
    def post(self, request, version_id: int):
        data = PredictIn(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.model_predict(
            organisation=request.organisation,
            version_id=version_id,
            texts=data.validated_data["texts"],
            api_key=request.auth if request.user.pk is None else None,
        )
        return Response(result)


class PromoteView(APIView):
    permissions = {"POST": "models.promote"}

    @extend_schema(request=PromoteIn, responses=ModelOut)
    def post(self, request, version_id: int):
        data = PromoteIn(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.model_promote(
            organisation=request.organisation,
            version_id=version_id,
            force=data.validated_data["force"],
            actor=request.user if request.user.pk is not None else request.auth,
        )
        return Response(ModelOut(version).data)


class RollbackView(APIView):
    permissions = {"POST": "models.promote"}

    @extend_schema(request=RollbackIn, responses=ModelOut)
    def post(self, request):
        data = RollbackIn(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(
            ModelOut(
                services.model_rollback(
                    organisation=request.organisation,
                    actor=request.user if request.user.pk is not None else request.auth,
                    **data.validated_data,
                )
            ).data
        )


class ArchiveView(APIView):
    permissions = {"POST": "models.promote"}

    @extend_schema(request=None, responses=ModelOut)
    def post(self, request, version_id: int):
        if not version_id:
            raise InvalidInput("A version id is required.")
        return Response(
            ModelOut(services.model_archive(organisation=request.organisation, version_id=version_id)).data
        )


class BatchPredictIn(StrictSerializer):
    file = serializers.FileField()
    model = serializers.IntegerField(required=False, help_text="a model version id (default: the active one)")
    app = serializers.CharField(required=False, default="", max_length=32)
    task = serializers.CharField(required=False, default="", max_length=64)


class BatchPredictView(APIView):
    permissions = {"POST": "models.predict"}
    parser_classes = [MultiPartParser]

    @extend_schema(request=BatchPredictIn, responses={201: JobOut})
    def post(self, request):
        data = BatchPredictIn(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        job = batch_predict_start(
            organisation=request.organisation,
            data=v["file"].read(),
            filename=v["file"].name,
            version_id=v.get("model"),
            app=v["app"],
            task=v["task"],
            created_by=request.user if request.user.pk else None,
        )
        return Response(JobOut(job).data, status=status.HTTP_201_CREATED)


class EmbedView(APIView):
    permissions = {"POST": "models.predict"}

    @extend_schema(request=PredictIn, responses=EmbedOut, parameters=[IDEMPOTENCY_KEY_PARAMETER])
    @idempotent
    def post(self, request, version_id: int):
        data = PredictIn(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.model_embed(
            organisation=request.organisation,
            version_id=version_id,
            texts=data.validated_data["texts"],
            api_key=request.auth if request.user.pk is None else None,
        )
        return Response(result)
