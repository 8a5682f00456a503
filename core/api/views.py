"""Platform API views: one operation per method, validate -> one service/selector -> serialize."""

from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

import core.api.schema  # noqa: F401  (registers the API-key scheme with drf-spectacular)
from core.api import serializers as s
from core.api.pagination import Pagination
from core.api.request_checks import query_choice
from core.billing import selectors as billing_selectors
from core.billing import services as billing
from core.billing.jobs import usage_export_start
from core.billing.meters import meter_codes
from core.errors import NotFound
from core.jobs import selectors as job_selectors
from core.jobs import services as jobs
from core.jobs.models import JobStatus
from core.tenancy import selectors as tenancy_selectors
from core.tenancy import services as tenancy
from core.tenancy.models import ApiKey, User


def paginate(view: APIView, request, queryset, serializer_class) -> Response:
    """A page of ``queryset``; the view declares ``pagination_class``, which the OpenAPI schema reads too."""
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)


def _actor(request) -> User | None:
    return request.user if isinstance(request.user, User) else None


def _who(request) -> User | ApiKey | None:
    """Who acts, for the audit log: the person, or the API key a machine presented."""
    return _actor(request) or (request.auth if isinstance(request.auth, ApiKey) else None)


class OrganisationView(APIView):
    permissions = {"GET": "org.view", "PATCH": "org.manage"}

    @extend_schema(responses=s.OrganisationOut)
    def get(self, request):
        return Response(s.OrganisationOut(request.organisation).data)

    @extend_schema(request=s.OrganisationIn, responses=s.OrganisationOut)
    def patch(self, request):
        data = s.OrganisationIn(data=request.data)
        data.is_valid(raise_exception=True)
        org = request.organisation
        org.name = data.validated_data["name"].strip()
        org.save(update_fields=["name", "updated_at"])
        return Response(s.OrganisationOut(org).data)


class MemberListView(APIView):
    pagination_class = Pagination

    @extend_schema(responses=s.MemberOut(many=True))
    def get(self, request):
        return paginate(
            self, request, tenancy_selectors.member_list(organisation=request.organisation), s.MemberOut
        )


class MemberDetailView(APIView):
    permissions = {"GET": "org.view", "PATCH": "members.manage", "DELETE": "members.manage"}

    def _role(self, request) -> str:
        return request.role or "admin"  # an admin-scoped key acts as an admin

    @extend_schema(responses=s.MemberOut)
    def get(self, request, member_id: int):
        member = tenancy_selectors.member_get(organisation=request.organisation, membership_id=member_id)
        if member is None:
            raise NotFound("No such member.")
        return Response(s.MemberOut(member).data)

    @extend_schema(request=s.MemberIn, responses=s.MemberOut)
    def patch(self, request, member_id: int):
        data = s.MemberIn(data=request.data)
        data.is_valid(raise_exception=True)
        tenancy.membership_change_role(
            organisation=request.organisation,
            actor_role=self._role(request),
            membership_id=member_id,
            role=data.validated_data["role"],
            actor=_who(request),
        )
        member = tenancy_selectors.member_get(organisation=request.organisation, membership_id=member_id)
        return Response(s.MemberOut(member).data)

    @extend_schema(responses={204: None})
    def delete(self, request, member_id: int):
        tenancy.membership_remove(
            organisation=request.organisation,
            actor_role=self._role(request),
            membership_id=member_id,
            actor=_who(request),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "members.manage", "POST": "members.manage"}

    @extend_schema(responses=s.InvitationOut(many=True))
    def get(self, request):
        qs = tenancy_selectors.invitation_list_pending(organisation=request.organisation).order_by(
            "-created_at"
        )
        return paginate(self, request, qs, s.InvitationOut)

    @extend_schema(request=s.InvitationIn, responses={201: s.InvitationOut})
    def post(self, request):
        data = s.InvitationIn(data=request.data)
        data.is_valid(raise_exception=True)
        invitation, token = tenancy.invitation_create(
            organisation=request.organisation,
            actor=_actor(request),
            actor_role=request.role or "admin",
            **data.validated_data,
        )
        tenancy.invitation_send(
            invitation=invitation,
            token=token,
            accept_url=request.build_absolute_uri(f"/invitations/{token}/"),
        )
        return Response(s.InvitationOut(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailView(APIView):
    permissions = {"DELETE": "members.manage"}

    @extend_schema(responses={204: None})
    def delete(self, request, invitation_id: int):
        tenancy.invitation_revoke(organisation=request.organisation, invitation_id=invitation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyListView(APIView):
    pagination_class = Pagination
    permissions = {"GET": "keys.manage", "POST": "keys.manage"}

    @extend_schema(responses=s.ApiKeyOut(many=True))
    def get(self, request):
        return paginate(
            self, request, tenancy_selectors.api_key_list(organisation=request.organisation), s.ApiKeyOut
        )

    @extend_schema(request=s.ApiKeyIn, responses={201: s.ApiKeyCreatedOut})
    def post(self, request):
        data = s.ApiKeyIn(data=request.data)
        data.is_valid(raise_exception=True)
        key, secret = tenancy.api_key_create(
            organisation=request.organisation, created_by=_actor(request), **data.validated_data
        )
        key.secret = secret
        return Response(s.ApiKeyCreatedOut(key).data, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    permissions = {"GET": "keys.manage", "DELETE": "keys.manage"}

    @extend_schema(responses=s.ApiKeyOut)
    def get(self, request, key_id: int):
        key = tenancy_selectors.api_key_get(organisation=request.organisation, key_id=key_id)
        if key is None:
            raise NotFound("No such API key.")
        return Response(s.ApiKeyOut(key).data)

    @extend_schema(responses=s.ApiKeyOut)
    def delete(self, request, key_id: int):
        key = tenancy.api_key_revoke(organisation=request.organisation, key_id=key_id, actor=_who(request))
        return Response(s.ApiKeyOut(key).data)


class UsageView(APIView):
    @extend_schema(responses=s.UsageOut)
    def get(self, request):
        return Response(s.UsageOut(billing_selectors.usage_summary(organisation=request.organisation)).data)


class UsageEventListView(APIView):
    pagination_class = Pagination

    @extend_schema(
        responses=s.UsageEventOut(many=True),
        parameters=[OpenApiParameter("meter", str, enum=meter_codes(), description="only this meter")],
    )
    def get(self, request):
        qs = billing_selectors.usage_event_list(
            organisation=request.organisation, meter=query_choice(request, "meter", meter_codes())
        )
        return paginate(self, request, qs, s.UsageEventOut)


class PlanListView(APIView):
    @extend_schema(responses=s.PlanOut(many=True))
    def get(self, request):
        return Response(s.PlanOut(billing_selectors.plan_list(), many=True).data)


class SubscriptionView(APIView):
    permissions = {"GET": "org.view", "POST": "billing.manage"}

    @extend_schema(responses=s.UsageOut)
    def get(self, request):
        return Response(s.UsageOut(billing_selectors.usage_summary(organisation=request.organisation)).data)

    @extend_schema(request=s.SubscriptionIn, responses=s.UsageOut)
    def post(self, request):
        data = s.SubscriptionIn(data=request.data)
        data.is_valid(raise_exception=True)
        billing.subscription_change_plan(
            organisation=request.organisation, plan_code=data.validated_data["plan"], actor=_who(request)
        )
        return Response(s.UsageOut(billing_selectors.usage_summary(organisation=request.organisation)).data)


class JobListView(APIView):
    """Lists jobs. Jobs are started by their own endpoints (``models/train/``, ``batch-predictions/``,
    ``usage/exports/``), each validating its input: a generic create would take internal parameters
    (paths, ids) from the client, so POST here answers 405."""

    pagination_class = Pagination
    permissions = {"GET": "org.view"}

    @extend_schema(
        responses=s.JobOut(many=True),
        parameters=[
            OpenApiParameter("status", str, enum=list(JobStatus.values), description="only this state"),
            OpenApiParameter("kind", str, description="only jobs of this kind, e.g. ml.train"),
        ],
    )
    def get(self, request):
        qs = job_selectors.job_list(
            organisation=request.organisation,
            status=query_choice(request, "status", JobStatus.values),
            kind=request.GET.get("kind"),
        )
        return paginate(self, request, qs, s.JobOut)


class UsageExportView(APIView):
    @extend_schema(request=s.UsageExportIn, responses={201: s.JobOut})
    def post(self, request):
        data = s.UsageExportIn(data=request.data)
        data.is_valid(raise_exception=True)
        job = usage_export_start(
            organisation=request.organisation,
            period=data.validated_data.get("period"),
            created_by=_actor(request),
        )
        return Response(s.JobOut(job).data, status=status.HTTP_201_CREATED)


class JobDetailView(APIView):
    @extend_schema(responses=s.JobOut)
    def get(self, request, job_id: int):
        job = job_selectors.job_get(organisation=request.organisation, job_id=job_id)
        if job is None:
            raise NotFound("No such job.")
        return Response(s.JobOut(job).data)


class JobCancelView(APIView):
    permissions = {"POST": "jobs.cancel"}

    @extend_schema(request=None, responses=s.JobOut)
    def post(self, request, job_id: int):
        return Response(s.JobOut(jobs.job_cancel(organisation=request.organisation, job_id=job_id)).data)


class JobDownloadView(APIView):
    @extend_schema(responses={(200, "text/csv"): bytes})
    def get(self, request, job_id: int):
        path = job_selectors.job_result_file(organisation=request.organisation, job_id=job_id)
        if path is None:
            raise NotFound("This job has no file to download (unknown, unfinished or without output).")
        return FileResponse(path.open("rb"), as_attachment=True, filename=path.name, content_type="text/csv")
