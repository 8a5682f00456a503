"""The recommender's pages: the overview (the checklist, sample shop, catalogue and events uploads, the Train
button, the models and the explorer) and the experiments. Each view validates with a form, calls the services
the API calls, and renders or redirects with a message; permissions by role (the API's) stay here."""

import dataclasses
from datetime import datetime, timedelta

from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpResponseBadRequest, HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from core.errors import NotFound, TrellisError
from core.registry.models import ModelVersion
from core.registry.services.common import SERVABLE, active_version
from core.tenancy.roles import role_can
from core.web.feedback import upload_outcome
from core.web.views import member_required
from recommender import demo, selectors
from recommender.forms import ExperimentForm, TrainForm, UploadForm, method_label
from recommender.kinds import APP, RECOMMENDER, TASK
from recommender.models import Item
from recommender.product import onboarding_checklist
from recommender.services import catalogue, events, experiments, serving, text, training, tuning
from recommender.services.rows import MAX_BATCH

# "Load the sample shop": the first purchases of the shipped Online Retail slice (the demo's loader) and the
# items they name: 5,000 purchases of 1,505 items by 162 customers over 20 days, metered as any catalogue.
# Their times are moved forward to end now (the gaps kept), so that popularity, which serves before any
# model and reads the last 30 days, answers at once.
SAMPLE_PURCHASES = 5_000
# the permission each of the checklist's buttons needs (the view behind it checks it again)
BUTTON_PERMISSIONS = {"recommender:sample": "recommender.ingest"}


def _checklist(request) -> list:
    """The checklist without the buttons the member's role may not press."""
    allowed = {reverse(name) for name, perm in BUTTON_PERMISSIONS.items() if role_can(request.role, perm)}
    return [
        dataclasses.replace(step, links=tuple(k for k in step.links if not k.post or k.url in allowed))
        for step in onboarding_checklist(organisation=request.organisation)
    ]


@member_required()
def index(request):
    """The catalogue and behaviour at a glance, the models, and the explorer: ``?user=`` shows that user's
    latest events and their recommendations with why each item is there (a served, metered request)."""
    return _index_page(request)


def _index_page(request, **forms):
    """The overview; ``forms``: a form sent back with its errors (the page then answers 400)."""
    organisation = request.organisation
    user = (request.GET.get("user") or "").strip()[:200]
    if "\x00" in user:
        return HttpResponseBadRequest("The user id may not contain NUL characters.")
    checklist = _checklist(request)
    context = {
        "checklist": checklist,
        "checklist_done": sum(step.done for step in checklist),
        "can_ingest": role_can(request.role, "recommender.ingest"),
        "can_train": role_can(request.role, "models.train"),
        "catalogue_form": forms.get("catalogue_form") or UploadForm(prefix="catalogue"),
        "events_form": forms.get("events_form") or UploadForm(prefix="events"),
        "train_form": forms.get("train_form") or TrainForm(),
        "stats": selectors.catalogue_stats(organisation=organisation),
        "versions": [
            (v, [v.metrics.get(key) for key in ("ndcg@10", "recall@10", "hr@10")])
            for v in ModelVersion.objects.for_org(organisation)
            .filter(app=APP, task=TASK)
            .order_by("-version")[:10]
        ],
        "text_model": active_version(organisation, APP, text.TEXT_TASK),
        "explore_user": user,
    }
    if user:
        context["history"] = selectors.user_recent_events(organisation=organisation, user=user)
        try:
            context["answer"] = answer = serving.recommendations_for_user(
                organisation=organisation, user=user, k=10, filters=serving.Filters(), record=False
            )
            context["answer_heading"] = _answer_heading(answer)
        except TrellisError as exc:
            context["error"] = exc.message
    return render(request, "recommender/index.html", context, status=400 if forms else 200)


def _answer_heading(answer: dict) -> str:
    """What answered, in words: the live popular items before the first model, else the version and its
    method's display name (and the experiment's arm that served it)."""
    if answer["version"] is None:
        return "Recommended: popular items (no model trained yet)"
    heading = f"Recommended by v{answer['version']} ({method_label(answer['method'])})"
    if answer["experiment"]:
        heading += f", experiment {answer['experiment']['name']}, arm {answer['experiment']['arm']}"
    return heading


def _back(anchor: str = ""):
    return redirect(reverse("recommender:index") + (f"#{anchor}" if anchor else ""))


def _sample_shop(organisation) -> tuple[int, int]:
    """The sample's items and purchases through the API's services, all or nothing; (items, purchases)."""
    items, purchases = demo.retail_catalogue_and_events()
    purchases = purchases[:SAMPLE_PURCHASES]
    last = max(datetime.fromisoformat(p["occurred_at"]) for p in purchases)
    shift = timezone.now() - timedelta(minutes=5) - last
    for p in purchases:
        p["occurred_at"] = (datetime.fromisoformat(p["occurred_at"]) + shift).isoformat()
    named = {p["item"] for p in purchases}
    items = [item for item in items if item["id"] in named]
    stored = 0
    with transaction.atomic():
        for start in range(0, len(items), MAX_BATCH):
            catalogue.items_upsert(organisation=organisation, rows=items[start : start + MAX_BATCH])
        for start in range(0, len(purchases), MAX_BATCH):
            part = purchases[start : start + MAX_BATCH]
            stored += events.events_ingest(organisation=organisation, rows=part).created
    return len(items), stored


@require_POST
@member_required("recommender.ingest")
def sample_load(request):
    """ "Load the sample shop": for an empty catalogue only (the demo seeder's rule)."""
    organisation = request.organisation
    if Item.objects.for_org(organisation).exists():
        messages.info(
            request, "Your catalogue has items already: the sample shop is loaded into an empty one."
        )
        return _back()
    try:
        items, purchases = _sample_shop(organisation)
    except TrellisError as exc:  # over the plan's catalogue items, for one: nothing was stored
        messages.error(request, f"The sample shop was not loaded: {exc.message}")
        return _back()
    customer = demo.retail_catalogue_and_events()[1][0]["user"]
    messages.success(
        request,
        f"Sample shop loaded: {items} items and {purchases} purchases from Online Retail (UCI, CC BY 4.0)."
        f" Popular items are recommended now; try customer {customer} in the explorer, or train a model.",
    )
    return _back()


def _upload(request, *, what: str, store, anchor: str):
    form = UploadForm(request.POST, request.FILES, prefix=anchor)
    if not form.is_valid():
        return _index_page(request, **{f"{anchor}_form": form})
    file = form.cleaned_data["file"]
    try:
        result = store(organisation=request.organisation, data=file.read(), filename=file.name or "")
    except TrellisError as exc:  # not a readable file, over the catalogue quota: nothing stored
        form.add_error("file", exc.message)
        return _index_page(request, **{f"{anchor}_form": form})
    summary = (
        f"{file.name}: {result.created} {what} created, {result.updated} updated, {result.existing} already"
        f" there, {len(result.rejected)} rejected."
    )
    upload_outcome(request, summary, [(r.index, r.reason) for r in result.rejected])
    return _back(anchor)


@require_POST
@member_required("recommender.ingest")
def catalogue_upload(request):
    """A CSV or JSONL file of items (``services.catalogue.items_upload``, the API's)."""
    return _upload(request, what="items", store=catalogue.items_upload, anchor="catalogue")


@require_POST
@member_required("recommender.ingest")
def events_upload(request):
    """A CSV or JSONL file of events (``services.events.events_upload``, the API's)."""
    return _upload(request, what="events", store=events.events_upload, anchor="events")


@require_POST
@member_required("models.train")
def train(request):
    """The API's training job with the chosen method's default settings; on to the job's page."""
    form = TrainForm(request.POST)
    if not form.is_valid():
        return _index_page(request, train_form=form)
    try:
        job = training.recommender_train_start(
            organisation=request.organisation,
            config={"method": form.cleaned_data["method"]},
            created_by=request.user,
        )
    except TrellisError as exc:  # the models quota, for one
        form.add_error(None, exc.message)
        return _index_page(request, train_form=form)
    messages.success(
        request,
        f"Training a {form.cleaned_data['method']} model (job #{job.pk}): it replaces the active model only"
        " if it scores better on held-out events.",
    )
    return redirect("job-detail", job_id=job.pk)


@require_POST
@member_required("models.train")
def tune_text(request):
    """The item text tuned on behaviour (a training job of the embedding kind); on to the job's page."""
    try:
        job = tuning.item_text_tune_start(organisation=request.organisation, created_by=request.user)
    except TrellisError as exc:  # the plan's quotas
        messages.error(request, exc.message)
        return _back("train")
    messages.success(
        request,
        f"Tuning the item text on behaviour (job #{job.pk}): it builds pairs of items taken one after another"
        " from your events, then trains. Once it is active, the catalogue is embedded again with it; train"
        " the hybrid again to rank with it.",
    )
    return redirect("job-detail", job_id=job.pk)


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
