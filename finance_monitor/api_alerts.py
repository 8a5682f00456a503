"""Alert rules, alerts and their deliveries over the REST API (``/api/finance-monitor/``).

Rules (and their webhook secrets) are for ``monitor.manage``; alerts, their evidence and deliveries are
readable by every member and read key, a delivery's target masked (the host of a webhook url) for those
who cannot manage rules. Each view validates, calls one service or selector, serializes.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.fields import text_field
from core.api.pagination import Pagination
from core.api.permissions import permission_scope
from core.api.request_checks import query_choice
from core.api.serializers import StrictSerializer
from core.api.views import paginate
from core.errors import NotFound
from core.tenancy.models import ApiKey
from core.tenancy.roles import role_can
from finance_monitor import selectors
from finance_monitor.api import DocumentOut, _query_int, _query_time, _valid
from finance_monitor.models import AlertKind, AlertTarget, Granularity
from finance_monitor.services import alert_delivery, alerts

# --- rules --------------------------------------------------------------------------------------------


class RuleOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    target = serializers.CharField()
    topic = serializers.CharField()
    entity = serializers.IntegerField(source="entity_id", allow_null=True)
    granularity = serializers.CharField()
    baseline_buckets = serializers.IntegerField()
    min_volume = serializers.IntegerField()
    significance = serializers.FloatField()
    test_share = serializers.BooleanField()
    test_volume = serializers.BooleanField()
    cooldown_s = serializers.IntegerField()
    enabled = serializers.BooleanField()
    email_recipients = serializers.ListField(child=serializers.CharField())
    webhook_url = serializers.CharField()
    webhook_secret = serializers.CharField(help_text="signs each webhook (Trellis-Signature)")
    evaluated_until = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class RuleIn(StrictSerializer):
    name = text_field(max_length=120)
    target = serializers.ChoiceField(choices=AlertTarget.choices, default=AlertTarget.ALL)
    topic = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
    entity = serializers.IntegerField(required=False, allow_null=True, default=None, min_value=1)
    granularity = serializers.ChoiceField(choices=Granularity.choices, default=Granularity.HOUR)
    baseline_buckets = serializers.IntegerField(min_value=6, max_value=2000, default=168)
    min_volume = serializers.IntegerField(min_value=1, max_value=1_000_000, default=30)
    significance = serializers.FloatField(
        min_value=1e-12,
        max_value=0.2,
        default=0.002,
        help_text="chance that one evaluation of a flat stream fires",
    )
    test_share = serializers.BooleanField(default=True)
    test_volume = serializers.BooleanField(default=False)
    cooldown_s = serializers.IntegerField(min_value=0, max_value=30 * 86400, default=6 * 3600)
    enabled = serializers.BooleanField(default=True)
    email_recipients = serializers.ListField(
        child=serializers.EmailField(max_length=254),
        required=False,
        default=list,
        max_length=alerts.MAX_RECIPIENTS,
    )
    webhook_url = serializers.URLField(max_length=2000, required=False, default="", allow_blank=True)


def _rule_fields(data: dict) -> dict:
    fields = dict(data)
    if "entity" in fields:
        fields["entity_id"] = fields.pop("entity")
    return fields


def _rule(request, rule_id: int):
    rule = selectors.alert_rule_get(organisation=request.organisation, rule_id=rule_id)
    if rule is None:
        raise NotFound("No such alert rule.")
    return rule


class RuleListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "monitor.manage", "POST": "monitor.manage"}

    @extend_schema(responses=RuleOut(many=True))
    def get(self, request):
        return paginate(self, request, selectors.alert_rule_list(organisation=request.organisation), RuleOut)

    @extend_schema(request=RuleIn, responses={201: RuleOut})
    def post(self, request):
        fields = _rule_fields(_valid(RuleIn, request))
        rule = alerts.alert_rule_save(organisation=request.organisation, **fields)
        return Response(RuleOut(rule).data, status=status.HTTP_201_CREATED)


class RuleDetailView(APIView):
    permissions = {"GET": "monitor.manage", "PATCH": "monitor.manage", "DELETE": "monitor.manage"}

    @extend_schema(responses=RuleOut)
    def get(self, request, rule_id: int):
        return Response(RuleOut(_rule(request, rule_id)).data)

    @extend_schema(request=RuleIn(partial=True), responses=RuleOut)
    def patch(self, request, rule_id: int):
        rule = _rule(request, rule_id)
        fields = _rule_fields(_valid(RuleIn, request, partial=True))
        rule = alerts.alert_rule_save(organisation=request.organisation, rule=rule, **fields)
        return Response(RuleOut(rule).data)

    @extend_schema(responses=None)
    def delete(self, request, rule_id: int):
        alerts.alert_rule_delete(rule=_rule(request, rule_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeliveryOut(serializers.Serializer):
    id = serializers.IntegerField()
    rule = serializers.IntegerField(source="rule_id")
    alert = serializers.IntegerField(source="alert_id", allow_null=True)
    channel = serializers.CharField()
    attempt = serializers.IntegerField()
    target = serializers.CharField()
    state = serializers.CharField()
    status_code = serializers.IntegerField(allow_null=True)
    response_excerpt = serializers.CharField()
    error = serializers.CharField()
    duration_ms = serializers.IntegerField()
    next_retry_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()


class DeliveryMaskedOut(DeliveryOut):
    """A delivery as members who cannot manage rules see it: the target's host (or the recipients'
    domains), never the webhook url, which is often a secret."""

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["target"] = alert_delivery.target_masked(channel=instance.channel, target=instance.target)
        return data


def _may(request, permission: str) -> bool:
    if isinstance(request.auth, ApiKey):
        scope = permission_scope(permission)
        return scope is not None and scope in request.auth.scopes
    return role_can(request.role, permission)


class RuleTestWebhookView(APIView):
    """POST a signed ``alert.test`` event to the rule's webhook now; the logged attempt comes back."""

    permissions = {"POST": "monitor.manage"}

    @extend_schema(request=None, responses=DeliveryOut)
    def post(self, request, rule_id: int):
        delivery = alert_delivery.rule_webhook_test(rule=_rule(request, rule_id))
        return Response(DeliveryOut(delivery).data)


class RuleDeliveriesView(APIView):
    """Every delivery attempt of the rule's alerts and test webhooks, newest first."""

    pagination_class = Pagination
    permissions = {"GET": "monitor.manage"}

    @extend_schema(responses=DeliveryOut(many=True))
    def get(self, request, rule_id: int):
        rule = _rule(request, rule_id)
        found = selectors.delivery_list(organisation=request.organisation, rule_id=rule.pk)
        return paginate(self, request, found, DeliveryOut)


# --- alerts -------------------------------------------------------------------------------------------


class AlertOut(serializers.Serializer):
    id = serializers.IntegerField()
    rule = serializers.IntegerField(source="rule_id")
    rule_name = serializers.CharField(source="rule.name")
    kind = serializers.CharField()
    dimension = serializers.CharField()
    key = serializers.CharField()
    granularity = serializers.CharField()
    bucket_start = serializers.DateTimeField()
    window = serializers.IntegerField()
    fired_at = serializers.DateTimeField()
    volume = serializers.IntegerField()
    negative = serializers.IntegerField()
    observed = serializers.FloatField()
    baseline = serializers.FloatField()
    baseline_volume = serializers.IntegerField()
    p_value = serializers.FloatField()
    evidence_count = serializers.IntegerField()


class AlertDetailOut(AlertOut):
    evidence = DocumentOut(many=True)


def _alert(request, alert_id: int):
    alert = selectors.alert_get(organisation=request.organisation, alert_id=alert_id)
    if alert is None:
        raise NotFound("No such alert.")
    return alert


class AlertListView(APIView):
    """Newest first; ``?rule=&kind=share|volume&since=&until=`` (the bucket's time)."""

    pagination_class = Pagination
    permissions = {"GET": "org.view"}

    @extend_schema(responses=AlertOut(many=True))
    def get(self, request):
        found = selectors.alert_list(
            organisation=request.organisation,
            rule_id=_query_int(request, "rule"),
            kind=query_choice(request, "kind", AlertKind.values) or "",
            since=_query_time(request, "since"),
            until=_query_time(request, "until"),
        )
        return paginate(self, request, found, AlertOut)


class AlertDetailView(APIView):
    """The alert with its evidence: the documents of the surge (up to 200 stored, most negative first)."""

    permissions = {"GET": "org.view"}

    @extend_schema(responses=AlertDetailOut)
    def get(self, request, alert_id: int):
        alert = _alert(request, alert_id)
        evidence = selectors.alert_evidence(organisation=request.organisation, alert=alert)
        return Response({**AlertOut(alert).data, "evidence": DocumentOut(evidence, many=True).data})


class AlertDeliveriesView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "org.view"}

    @extend_schema(responses=DeliveryOut(many=True))
    def get(self, request, alert_id: int):
        alert = _alert(request, alert_id)
        found = selectors.delivery_list(organisation=request.organisation, alert_id=alert.pk)
        out = DeliveryOut if _may(request, "monitor.manage") else DeliveryMaskedOut
        return paginate(self, request, found, out)
