"""Privacy API: the audit log, and the organisation's export, import and deletion (owners only)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.pagination import Pagination
from core.api.request_checks import query_choice
from core.api.serializers import StrictSerializer
from core.api.views import paginate
from core.privacy.audit import audit_actions, audit_event_list
from core.privacy.services import organisation_delete


class AuditEventOut(serializers.Serializer):
    id = serializers.IntegerField()
    time = serializers.DateTimeField(source="created_at")
    action = serializers.CharField()
    actor_email = serializers.CharField()
    actor_key = serializers.CharField()
    target = serializers.CharField()
    details = serializers.JSONField()


class AuditLogView(APIView):
    """Who did what in the organisation, latest first."""

    pagination_class = Pagination
    permissions = {"GET": "org.privacy"}

    @extend_schema(
        responses=AuditEventOut(many=True),
        parameters=[OpenApiParameter("action", str, enum=audit_actions(), description="only this action")],
    )
    def get(self, request):
        qs = audit_event_list(
            organisation=request.organisation, action=query_choice(request, "action", audit_actions())
        )
        return paginate(self, request, qs, AuditEventOut)


class OrganisationDeleteIn(StrictSerializer):
    confirm = serializers.CharField(
        trim_whitespace=False, max_length=200, help_text="the organisation's name, exactly as it is spelled"
    )


class OrganisationDeletionOut(serializers.Serializer):
    organisation = serializers.IntegerField(source="organisation_id")
    deleted_at = serializers.DateTimeField(source="created_at")
    finished_at = serializers.DateTimeField(allow_null=True)
    removed = serializers.JSONField(help_text="rows removed per table, files removed, people removed")


class OrganisationDeleteView(APIView):
    """Deletes the organisation with everything it owns (owners only, people only; irreversible).

    Kept: an anonymised tombstone of the organisation, this deletion record, and the billing ledger with
    its API keys unset and personal data removed."""

    permissions = {"POST": "org.privacy"}

    @extend_schema(request=OrganisationDeleteIn, responses={200: OrganisationDeletionOut})
    def post(self, request):
        data = OrganisationDeleteIn(data=request.data)
        data.is_valid(raise_exception=True)
        record = organisation_delete(
            organisation=request.organisation, actor=request.user, confirm_name=data.validated_data["confirm"]
        )
        return Response(OrganisationDeletionOut(record).data)
