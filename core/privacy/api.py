"""Privacy API: the audit log, and the organisation's export, import and deletion (owners only)."""

from django.http import FileResponse, HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api.pagination import Pagination
from core.api.request_checks import query_choice
from core.api.serializers import StrictSerializer
from core.api.views import paginate
from core.privacy.audit import audit_actions, audit_event_list
from core.privacy.export import (
    export_archive_file,
    export_download,
    export_expires_at,
    export_list,
    organisation_export_start,
)
from core.privacy.importing import organisation_import
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


class ExportOut(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    progress = serializers.FloatField()
    message = serializers.CharField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.SerializerMethodField(help_text="when the archive is removed")
    size = serializers.SerializerMethodField(help_text="the archive's size in bytes, once made")
    download = serializers.SerializerMethodField(help_text="where to download it; null until made or expired")

    def get_expires_at(self, job) -> str | None:
        when = export_expires_at(job)
        return when.isoformat() if when else None

    def get_size(self, job) -> int | None:
        return (job.result or {}).get("bytes")

    def get_download(self, job) -> str | None:
        return f"/api/organisation/exports/{job.pk}/download/" if export_archive_file(job) else None


class OrganisationExportListView(APIView):
    """The organisation's exports (GET), and a new one (POST): an archive of everything it owns, made by a
    job; owners only, people only. Archives are removed some days after they were made (``expires_at``)."""

    pagination_class = Pagination
    permissions = {"GET": "org.privacy", "POST": "org.privacy"}

    @extend_schema(responses=ExportOut(many=True))
    def get(self, request):
        return paginate(self, request, export_list(organisation=request.organisation), ExportOut)

    @extend_schema(request=None, responses={201: ExportOut})
    def post(self, request):
        job = organisation_export_start(organisation=request.organisation, actor=request.user)
        return Response(ExportOut(job).data, status=status.HTTP_201_CREATED)


class OrganisationExportDownloadView(APIView):
    """The export's archive (a zip, in plaintext even when it is encrypted at rest)."""

    permissions = {"GET": "org.privacy"}

    @extend_schema(responses={(200, "application/zip"): bytes})
    def get(self, request, export_id: int):
        name, content = export_download(organisation=request.organisation, job_id=export_id)
        if isinstance(content, bytes):
            response = HttpResponse(content, content_type="application/zip")
            response["Content-Disposition"] = f'attachment; filename="{name}"'
            return response
        return FileResponse(
            content.open("rb"), as_attachment=True, filename=name, content_type="application/zip"
        )


class OrganisationImportIn(StrictSerializer):
    archive = serializers.FileField(help_text="an archive exported from a Trellis organisation (zip)")


class OrganisationImportOut(serializers.Serializer):
    source = serializers.JSONField(help_text="the exported organisation's id and name")
    made_at = serializers.CharField(allow_null=True)
    rows = serializers.JSONField(help_text="rows re-created per table")
    files = serializers.IntegerField(help_text="files written into the organisation's folders")
    not_imported = serializers.ListField(
        child=serializers.CharField(), help_text="tables left out, by design"
    )


class OrganisationImportView(APIView):
    """Re-creates an exported organisation's data in this one, which must hold none yet (owners, people
    only). People, API keys, the plan and the ledger are not imported; the answer lists what was."""

    permissions = {"POST": "org.privacy"}
    parser_classes = [MultiPartParser]

    @extend_schema(request=OrganisationImportIn, responses={201: OrganisationImportOut})
    def post(self, request):
        data = OrganisationImportIn(data=request.data)
        data.is_valid(raise_exception=True)
        result = organisation_import(
            organisation=request.organisation, actor=request.user, upload=data.validated_data["archive"]
        )
        return Response(OrganisationImportOut(result).data, status=status.HTTP_201_CREATED)
