"""Privacy API: the audit log, and the organisation's export, import and deletion (owners only)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from core.api.pagination import Pagination
from core.api.request_checks import query_choice
from core.api.views import paginate
from core.privacy.audit import audit_actions, audit_event_list


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
