"""Input and output shapes of the platform API. Inputs reject unknown fields."""

from rest_framework import serializers

from core.api.fields import text_field
from core.tenancy.models import Role
from core.tenancy.roles import SCOPES


class StrictSerializer(serializers.Serializer):
    """Unknown fields are an error, not silently ignored."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Expected a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class OrganisationOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    slug = serializers.CharField()
    created_at = serializers.DateTimeField()


class OrganisationIn(StrictSerializer):
    name = text_field(max_length=120)


class MemberOut(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField(source="user.email")
    role = serializers.CharField()
    joined_at = serializers.DateTimeField(source="created_at")


class MemberIn(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationOut(serializers.Serializer):
    id = serializers.IntegerField()
    email = serializers.EmailField()
    role = serializers.CharField()
    expires_at = serializers.DateTimeField()
    created_at = serializers.DateTimeField()


class InvitationIn(StrictSerializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)


class ApiKeyOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class ApiKeyCreatedOut(ApiKeyOut):
    secret = serializers.CharField(help_text="Shown once; store it now.")


class ApiKeyIn(StrictSerializer):
    name = text_field(max_length=80)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=list(SCOPES)), allow_empty=False)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class MeterOut(serializers.Serializer):
    meter = serializers.CharField()
    label = serializers.CharField()
    used = serializers.FloatField()
    limit = serializers.IntegerField()
    kind = serializers.CharField()
    unit = serializers.CharField()


class UsageOut(serializers.Serializer):
    period = serializers.CharField()
    period_start = serializers.CharField()
    period_end = serializers.CharField()
    plan_code = serializers.CharField()
    plan_name = serializers.CharField()
    status = serializers.CharField()
    trial_ends_at = serializers.CharField(allow_null=True)
    requests_per_minute = serializers.IntegerField()
    meters = MeterOut(many=True)


class UsageEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    meter = serializers.CharField()
    quantity = serializers.FloatField()
    api_key_prefix = serializers.CharField(source="api_key.prefix", allow_null=True, default=None)
    metadata = serializers.JSONField()
    created_at = serializers.DateTimeField()


class PlanOut(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    price_cents = serializers.IntegerField()
    currency = serializers.CharField()
    trial_days = serializers.IntegerField(allow_null=True)
    predictions_per_month = serializers.IntegerField()
    training_jobs_per_month = serializers.IntegerField()
    gpu_minutes_per_month = serializers.IntegerField()
    api_calls_per_month = serializers.IntegerField()
    max_models = serializers.IntegerField()
    max_seats = serializers.IntegerField()
    max_stored_records = serializers.IntegerField()
    requests_per_minute = serializers.IntegerField()
    limits = serializers.DictField(
        child=serializers.IntegerField(), source="limits_all", help_text="every registered meter's limit"
    )


class SubscriptionIn(StrictSerializer):
    plan = serializers.CharField(max_length=32)


class JobOut(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    app = serializers.CharField()
    queue = serializers.CharField()
    status = serializers.CharField()
    progress = serializers.FloatField()
    message = serializers.CharField()
    metrics = serializers.JSONField()
    params = serializers.JSONField()
    result = serializers.JSONField()
    device = serializers.CharField()
    gpu_seconds = serializers.FloatField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class UsageExportIn(StrictSerializer):
    period = serializers.RegexField(
        r"^[0-9]{4}-(0[1-9]|1[0-2])$", required=False, help_text="YYYY-MM (default: the current month)"
    )
