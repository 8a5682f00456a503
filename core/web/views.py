"""Server-rendered pages of the platform. Each view: check role, call a service/selector, render."""

import json
from functools import wraps

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponseForbidden, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.billing import selectors as billing_selectors
from core.billing import services as billing
from core.errors import TrellisError
from core.jobs import selectors as job_selectors
from core.jobs import services as jobs
from core.jobs.describe import job_sentence
from core.jobs.handlers import job_kinds
from core.registry import selectors as registry_selectors
from core.registry.services import fine_tune_offered
from core.registry.services.trying import model_can_try
from core.tenancy import selectors as tenancy_selectors
from core.tenancy import services as tenancy
from core.tenancy.middleware import current_membership
from core.tenancy.roles import role_can, role_descriptions
from core.web import forms
from core.web.navigation import product_cards, product_next_steps


def member_required(permission: str = "org.view"):
    """Signed in, a member of an organisation, and a role that has ``permission``."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapper(request, *args, **kwargs):
            membership = current_membership(request)
            if membership is None:
                return render(request, "web/no_organisation.html", status=403)
            if not role_can(membership.role, permission):
                return HttpResponseForbidden(f"Your role ({membership.role}) does not allow this page.")
            request.organisation, request.role = membership.organisation, membership.role
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def home(request):
    if request.user.is_authenticated:
        return redirect("dashboard")
    return render(request, "web/home.html")


def signup(request):
    form = forms.SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            organisation, user = tenancy.organisation_sign_up(**form.cleaned_data)
        except TrellisError as exc:
            form.add_error(exc.details.get("field"), exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            request.session["org_id"] = organisation.pk
            messages.success(request, f"Welcome to Trellis. {organisation.name} is on a 14-day free trial.")
            return redirect("dashboard")
    return render(request, "registration/signup.html", {"form": form})


def invitation_accept(request, token: str):
    try:
        invitation = tenancy.invitation_by_token(token=token)
    except TrellisError as exc:
        return render(request, "web/message.html", {"title": "Invitation", "text": exc.message}, status=400)
    form = forms.AcceptInvitationForm(request.POST or None)
    if request.method == "POST":
        try:
            if request.user.is_authenticated:
                membership = tenancy.invitation_accept(token=token, user=request.user)
            elif form.is_valid():
                membership, user = tenancy.invitation_accept_new_user(token=token, **form.cleaned_data)
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            else:
                membership = None
        except TrellisError as exc:
            form.add_error(None, exc.message)
        else:
            if membership is not None:
                request.session["org_id"] = membership.organisation_id
                return redirect("dashboard")
    return render(request, "web/invitation.html", {"invitation": invitation, "form": form})


@login_required
@require_POST
def switch_organisation(request):
    org_id = int(request.POST.get("org_id", 0))
    if any(m.organisation_id == org_id for m in tenancy_selectors.memberships_for_user(user=request.user)):
        request.session["org_id"] = org_id
    return redirect("dashboard")


@member_required()
def dashboard(request):
    summary = billing_selectors.usage_summary(organisation=request.organisation)
    # each in a sentence, as on the jobs page (not its internal kind and a raw progress fraction)
    recent_jobs = [
        (job, job_sentence(job)) for job in job_selectors.job_list(organisation=request.organisation)[:5]
    ]
    memberships = tenancy_selectors.memberships_for_user(user=request.user)
    context = {
        "summary": summary,
        "jobs": recent_jobs,
        "memberships": memberships,
        "cards": product_cards(request.role),
        "next_steps": product_next_steps(request.organisation, request.role),
    }
    return render(request, "web/dashboard.html", context)


@member_required()
def members(request):
    can_manage = role_can(request.role, "members.manage")
    invite_form = forms.InviteForm(request.POST or None)
    if request.method == "POST":
        if not can_manage:
            return HttpResponseForbidden("Your role does not allow inviting members.")
        if invite_form.is_valid():
            try:
                invitation, token = tenancy.invitation_create(
                    organisation=request.organisation,
                    actor=request.user,
                    actor_role=request.role,
                    **invite_form.cleaned_data,
                )
            except TrellisError as exc:
                invite_form.add_error(None, exc.message)
            else:
                url = request.build_absolute_uri(f"/invitations/{token}/")
                tenancy.invitation_send(invitation=invitation, token=token, accept_url=url)
                messages.success(request, f"Invitation sent to {invitation.email}.")
                return redirect("members")
    context = {
        "members": tenancy_selectors.member_list(organisation=request.organisation),
        "invitations": tenancy_selectors.invitation_list_pending(organisation=request.organisation),
        "invite_form": invite_form,
        "can_manage": can_manage,
        "roles": role_descriptions(),
    }
    return render(request, "web/members.html", context)


def _run(request, action, success: str):
    try:
        action()
    except TrellisError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success)


@member_required("members.manage")
@require_POST
def member_change(request, member_id: int):
    if tenancy_selectors.member_get(organisation=request.organisation, membership_id=member_id) is None:
        raise Http404
    if request.POST.get("action") == "remove":
        _run(
            request,
            lambda: tenancy.membership_remove(
                organisation=request.organisation,
                actor_role=request.role,
                membership_id=member_id,
                actor=request.user,
            ),
            "Member removed.",
        )
    else:
        form = forms.RoleForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Choose a valid role.")
        else:
            _run(
                request,
                lambda: tenancy.membership_change_role(
                    organisation=request.organisation,
                    actor_role=request.role,
                    membership_id=member_id,
                    role=form.cleaned_data["role"],
                    actor=request.user,
                ),
                "Role changed.",
            )
    return redirect("members")


@member_required("members.manage")
@require_POST
def invitation_revoke(request, invitation_id: int):
    if not tenancy_selectors.invitation_list_pending(organisation=request.organisation).filter(
        pk=invitation_id
    ):
        raise Http404
    _run(
        request,
        lambda: tenancy.invitation_revoke(organisation=request.organisation, invitation_id=invitation_id),
        "Invitation revoked.",
    )
    return redirect("members")


@member_required("keys.manage")
def api_keys(request):
    form = forms.ApiKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            _key, secret = tenancy.api_key_create(
                organisation=request.organisation, created_by=request.user, **form.cleaned_data
            )
        except TrellisError as exc:
            form.add_error(None, exc.message)
        else:
            # Post/redirect/get: a reload must not create a second key. The secret is shown once.
            request.session["new_key_secret"] = secret
            return redirect("api-keys")
    new_secret = request.session.pop("new_key_secret", None) if request.method == "GET" else None
    keys = tenancy_selectors.api_key_list(organisation=request.organisation)
    return render(request, "web/api_keys.html", {"form": form, "keys": keys, "new_secret": new_secret})


@member_required("keys.manage")
@require_POST
def api_key_revoke(request, key_id: int):
    if tenancy_selectors.api_key_get(organisation=request.organisation, key_id=key_id) is None:
        raise Http404
    _run(
        request,
        lambda: tenancy.api_key_revoke(organisation=request.organisation, key_id=key_id, actor=request.user),
        "Key revoked.",
    )
    return redirect("api-keys")


@member_required()
def usage(request):
    # each line with its detail in words, as the jobs pages pair a job with its sentence
    events = [
        (event, billing_selectors.usage_detail(event.metadata))
        for event in billing_selectors.usage_events_recent(organisation=request.organisation)
    ]
    summary = billing_selectors.usage_summary(organisation=request.organisation)
    return render(request, "web/usage.html", {"summary": summary, "events": events})


@member_required()
def billing_page(request):
    if request.method == "POST":
        if not role_can(request.role, "billing.manage"):
            return HttpResponseForbidden("Only an owner can change the plan.")
        form = forms.PlanForm(request.POST)
        if form.is_valid():
            _run(
                request,
                lambda: billing.subscription_change_plan(
                    organisation=request.organisation,
                    plan_code=form.cleaned_data["plan"],
                    actor=request.user,
                ),
                "Plan changed.",
            )
        return redirect("billing")
    context = {
        "summary": billing_selectors.usage_summary(organisation=request.organisation),
        "plans": billing_selectors.plan_list(),
        "can_manage": role_can(request.role, "billing.manage"),
    }
    return render(request, "web/billing.html", context)


@member_required()
def jobs_page(request):
    rows = list(job_selectors.job_list(organisation=request.organisation)[:100])
    context = {
        "jobs": [(job, job_sentence(job)) for job in rows],  # each in a sentence, as on its own page
        "kinds": job_kinds(),
        "can_cancel": role_can(request.role, "jobs.cancel"),
    }
    return render(request, "web/jobs.html", context)


@member_required()
def jobs_status(request):
    """JSON for the jobs page's poller: the rows are the truth."""
    parts = [part for part in request.GET.get("ids", "").split(",") if part]
    if not all(part.isascii() and part.isdigit() for part in parts):
        return JsonResponse({"error": "ids must be job numbers separated by commas."}, status=400)
    ids = [int(part) for part in parts][:200]
    rows = job_selectors.job_list(organisation=request.organisation).filter(pk__in=ids)
    return JsonResponse({"jobs": [jobs.job_payload(job) for job in rows]})


@member_required("jobs.cancel")
@require_POST
def job_cancel(request, job_id: int):
    if job_selectors.job_get(organisation=request.organisation, job_id=job_id) is None:
        raise Http404
    _run(request, lambda: jobs.job_cancel(organisation=request.organisation, job_id=job_id), "Job cancelled.")
    return redirect("jobs")


def _model_try_box(request, job) -> bool:
    """Whether the trained model's page has a box to try it: this organisation's version, labelling texts."""
    version_id = (job.result or {}).get("model_version")
    if not isinstance(version_id, int):
        return False
    version = registry_selectors.model_get(organisation=request.organisation, version_id=version_id)
    return version is not None and not model_can_try(version=version)


@member_required()
def job_detail(request, job_id: int):
    job = job_selectors.job_get(organisation=request.organisation, job_id=job_id)
    if job is None:
        raise Http404
    context = {
        "job": job,
        "sentence": job_sentence(job),
        "fine_tune": role_can(request.role, "models.train") and fine_tune_offered(job),
        "model_try_box": _model_try_box(request, job),
        "detail": {
            name: json.dumps(value, indent=2, sort_keys=True, default=str)
            for name, value in (("Parameters", job.params), ("Progress", job.metrics), ("Result", job.result))
            if value
        },
    }
    return render(request, "web/job_detail.html", context)


@member_required()
def job_download(request, job_id: int):
    path = job_selectors.job_result_file(organisation=request.organisation, job_id=job_id)
    if path is None:
        raise Http404
    return FileResponse(path.open("rb"), as_attachment=True, filename=path.name, content_type="text/csv")
