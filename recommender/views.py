from django.contrib import messages
from django.http import Http404, HttpResponseBadRequest, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from core.errors import NotFound, TrellisError
from core.registry.models import ModelVersion
from core.registry.services.common import SERVABLE
from core.tenancy.roles import role_can
from core.web.views import member_required
from recommender import selectors
from recommender.forms import ExperimentForm
from recommender.kinds import APP, RECOMMENDER, TASK
from recommender.services import experiments, serving


@member_required()
def index(request):
    """The catalogue and behaviour at a glance, the models, and the explorer: ``?user=`` shows that user's
    latest events and their recommendations with why each item is there (a served, metered request)."""
    organisation = request.organisation
    user = (request.GET.get("user") or "").strip()[:200]
    if "\x00" in user:
        return HttpResponseBadRequest("The user id may not contain NUL characters.")
    context = {
        "stats": selectors.catalogue_stats(organisation=organisation),
        "versions": [
            (v, [v.metrics.get(key) for key in ("ndcg@10", "recall@10", "hr@10")])
            for v in ModelVersion.objects.for_org(organisation)
            .filter(app=APP, task=TASK)
            .order_by("-version")[:10]
        ],
        "explore_user": user,
    }
    if user:
        context["history"] = selectors.user_recent_events(organisation=organisation, user=user)
        try:
            context["answer"] = serving.recommendations_for_user(
                organisation=organisation, user=user, k=10, filters=serving.Filters(), record=False
            )
        except TrellisError as exc:
            context["error"] = exc.message
    return render(request, "recommender/index.html", context)


def _servable_versions(organisation) -> list[ModelVersion]:
    return list(
        ModelVersion.objects.for_org(organisation)
        .filter(app=APP, task=TASK, kind=RECOMMENDER, status__in=SERVABLE)
        .order_by("-version")
    )


@member_required()
def experiments_page(request):
    """The organisation's experiments, and (for owners and admins) a form to create one."""
    organisation = request.organisation
    can_manage = role_can(request.role, "recommender.manage")
    form = ExperimentForm(
        request.POST if request.method == "POST" else None, versions=_servable_versions(organisation)
    )
    status = 200
    if request.method == "POST":
        if not can_manage:
            return HttpResponseForbidden(f"Your role ({request.role}) cannot create experiments.")
        if form.is_valid():
            try:
                made = experiments.experiment_create(organisation=organisation, **form.cleaned_data)
            except TrellisError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(request, f"Experiment '{made.name}' created: start it when ready.")
                return redirect("recommender:experiment", experiment_id=made.pk)
        status = 400
    context = {
        "experiments": experiments.experiment_list(organisation=organisation)[:50],
        "form": form,
        "can_manage": can_manage,
    }
    return render(request, "recommender/experiments.html", context, status=status)


@member_required()
def experiment_page(request, experiment_id: int):
    """One experiment's results per arm (impressions, click-through, conversion, intervals)."""
    try:
        results = experiments.experiment_results(
            organisation=request.organisation, experiment_id=experiment_id
        )
    except NotFound as exc:
        raise Http404(exc.message) from exc
    context = {**results, "can_manage": role_can(request.role, "recommender.manage")}
    return render(request, "recommender/experiment.html", context)


@require_POST
@member_required("recommender.manage")
def experiment_action(request, experiment_id: int, action: str):
    """Start or stop an experiment; back to its page with what happened."""
    act = {"start": experiments.experiment_start, "stop": experiments.experiment_stop}.get(action)
    if act is None:
        raise Http404("No such action.")
    try:
        done = act(organisation=request.organisation, experiment_id=experiment_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    except TrellisError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Experiment '{done.name}' is {done.status}.")
    return redirect("recommender:experiment", experiment_id=experiment_id)
