"""The finance monitor's pages: the dashboard (charts, live feed, alerts, source health, and a new
customer's way in: the checklist, sample data, a file upload, watch-list and feed forms, the default models'
training), the drill-down of documents with its CSV export and analysts' corrections, and the alert list.
Each view validates with a form, calls selectors and services (the API's), and renders; permissions by role
(``member_required``, the API's permissions) stay here."""

import dataclasses

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from core.errors import InvalidInput, NotFound, TrellisError
from core.jobs.models import ACTIVE_STATUSES
from core.tenancy.roles import role_can
from core.web.feedback import upload_outcome
from core.web.views import member_required
from finance_monitor import selectors
from finance_monitor.forms import (
    AlertRuleForm,
    ChartForm,
    CorrectionForm,
    DocumentFilterForm,
    EntityForm,
    FeedForm,
    UploadForm,
)
from finance_monitor.product import onboarding_checklist
from finance_monitor.services import alerts as alert_rules
from finance_monitor.services import (
    corrections,
    dashboard,
    defaults,
    entities,
    feeds,
    sample,
    uploads,
)

PAGE_SIZE = 50


def _models_status(organisation, pending: int) -> dict:
    """The default models' training as the page says it: the jobs under way (to link), or why documents
    wait."""
    status = selectors.classification_status(organisation=organisation)
    training = [job for job in status["default_jobs"] if job.status in ACTIVE_STATUSES]
    ready = status["topic"] is not None and status["sentiment"] is not None
    latest_failed = (
        next((job for job in status["default_jobs"] if job.status == "failed"), None)
        if not ready and not training
        else None
    )
    return {"training": training, "ready": ready, "failed": latest_failed, "pending": pending}


# the permission each of the checklist's buttons needs (the view behind it checks it again)
BUTTON_PERMISSIONS = {
    "finance_monitor:sample": "monitor.ingest",
    "finance_monitor:models-default": "models.train",
}


def _checklist(request) -> list:
    """The checklist without the buttons the member's role may not press."""
    allowed = {reverse(name) for name, perm in BUTTON_PERMISSIONS.items() if role_can(request.role, perm)}
    return [
        dataclasses.replace(step, links=tuple(k for k in step.links if not k.post or k.url in allowed))
        for step in onboarding_checklist(organisation=request.organisation)
    ]


def _index_context(request, **forms) -> dict:
    organisation = request.organisation
    pending = selectors.document_list(organisation=organisation, classified=False).count()
    checklist = _checklist(request)
    return {
        "pending": pending,
        "models_status": _models_status(organisation, pending),
        "checklist": checklist,
        "checklist_done": sum(step.done for step in checklist),
        "can_ingest": role_can(request.role, "monitor.ingest"),
        "can_manage": role_can(request.role, "monitor.manage"),
        "can_train": role_can(request.role, "models.train"),
        "upload_form": forms.get("upload_form") or UploadForm(),
        "entity_form": forms.get("entity_form") or EntityForm(),
        "feed_form": forms.get("feed_form") or FeedForm(),
        "watchlist": list(selectors.entity_list(organisation=organisation)),
    }


@member_required()
def index(request):
    """Charts of the chosen series (all, a topic, a watch-list entry), the busiest topics, the live feed,
    the latest alerts and the health of every source; the checklist and the forms a new customer starts
    from."""
    return _index_page(request)


def _index_page(request, **forms):
    """The dashboard; ``forms``: a form sent back with its errors (the page then answers 400)."""
    organisation = request.organisation
    targets = dashboard.chart_targets(organisation=organisation)
    form = ChartForm(request.GET, targets=targets)
    valid = form.is_valid()
    data = form.cleaned_data if valid else {"granularity": "hour", "span": 48, "target": targets[0]}
    granularity, span = data["granularity"], data["span"]
    sources = [
        (s, selectors.source_health(source=s)) for s in selectors.source_list(organisation=organisation)
    ]
    context = {
        **_index_context(request, **forms),
        "form": form,
        "chart": dashboard.trend_chart(
            organisation=organisation, target=data["target"], granularity=granularity, span=span
        ),
        "topics_chart": dashboard.topic_volume_chart(
            organisation=organisation, granularity=granularity, span=span
        ),
        "feed": dashboard.feed_latest(organisation=organisation),
        "alerts": selectors.alert_list(organisation=organisation)[:5],
        "alert_count": selectors.alert_list(organisation=organisation).count(),
        "sources": sources,
    }
    status = 200 if valid and not forms else 400
    return render(request, "finance_monitor/index.html", context, status=status)


def _back(anchor: str = ""):
    return HttpResponseRedirect(reverse("finance_monitor:index") + (f"#{anchor}" if anchor else ""))


def _form_error(request, form, exc: TrellisError, **forms):
    """The service refused the form's values: its message beside the field it names, the page again."""
    field = exc.details.get("field")
    form.add_error(field if field in form.fields else None, exc.message)
    return _index_page(request, **forms)  # member_required already ran: the same request


@require_POST
@member_required("monitor.ingest")
def sample_load(request):
    """ "Try it with sample data" (``services.sample``): a modest replay of the shipped texts, and the demo's
    alert rule where the organisation has none and the person may manage the monitor."""
    organisation = request.organisation
    if sample.sample_loaded(organisation=organisation):
        messages.info(request, "The sample data was loaded already; nothing was added.")
        return _back()
    try:
        loaded = sample.sample_load(
            organisation=organisation, with_rule=role_can(request.role, "monitor.manage")
        )
    except TrellisError as exc:  # over the plan's documents, for one: nothing was stored
        messages.error(request, f"The sample data was not loaded: {exc.message}")
        return _back()
    plan = sample.PLAN
    live = plan.live_per_minute * plan.live_minutes
    rule = ""
    if loaded.rule:
        rule = f" The alert rule '{loaded.rule.name}' watches for it: its alert appears under Alerts."
    messages.success(
        request,
        f"Sample data loaded: {loaded.backfilled} documents of the past day from twitter financial news"
        f" (MIT). {live} more arrive over the next {plan.live_minutes} minutes, and a surge of"
        f" {plan.surge_size} negative ones after two minutes.{rule}",
    )
    return _back()


@require_POST
@member_required("monitor.ingest")
def upload(request):
    """A CSV or JSONL file of documents through the API's upload service: what was stored, what was not
    and why (row by row)."""
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _index_page(request, upload_form=form)
    file = form.cleaned_data["file"]
    try:
        result = uploads.documents_upload(
            organisation=request.organisation,
            data=file.read(),
            filename=file.name or "",
            source_name=form.cleaned_data["source"],
        )
    except TrellisError as exc:  # not a readable file, over the documents quota: nothing stored
        return _form_error(request, form, exc, upload_form=form)
    summary = (
        f"{file.name}: {result.rows} row{'s' if result.rows != 1 else ''} read, {result.created} stored"
        f" ({result.existing} already there, {result.duplicates} copies), {len(result.rejected)} rejected."
    )
    upload_outcome(request, summary, [(r.line, r.reason) for r in result.rejected])
    return _back()


@require_POST
@member_required("monitor.manage")
def entity_add(request):
    """A watch-list entry (``services.entities.entity_save``, the API's)."""
    form = EntityForm(request.POST)
    if not form.is_valid():
        return _index_page(request, entity_form=form)
    try:
        entity = entities.entity_save(organisation=request.organisation, **form.cleaned_data)
    except TrellisError as exc:
        return _form_error(request, form, exc, entity_form=form)
    messages.success(request, f"'{entity.name}' is on the watch-list: new documents that name it are tagged.")
    return _back("watch-list")


@require_POST
@member_required("monitor.manage")
def entity_delete(request, entity_id: int):
    """Take an entry off the watch-list (the API's DELETE): its rules go with it, the documents stay."""
    entity = selectors.entity_get(organisation=request.organisation, entity_id=entity_id)
    if entity is None:
        raise Http404("No such watch-list entry.")
    name = entity.name
    entities.entity_delete(entity=entity)
    messages.success(request, f"'{name}' is off the watch-list; its documents stay.")
    return _back("watch-list")


@require_POST
@member_required("monitor.manage")
def source_delete(request, source_id: int):
    """Remove a source (the API's DELETE): its documents stay, without a source."""
    source = selectors.source_get(organisation=request.organisation, source_id=source_id)
    if source is None:
        raise Http404("No such source.")
    name = source.name
    feeds.source_delete(source=source)
    messages.success(request, f"Source '{name}' removed; its documents stay.")
    return _back("sources")


@require_POST
@member_required("monitor.manage")
def feed_add(request):
    """An RSS/Atom feed to poll (``services.feeds.feed_create``, the API's, with its address checks)."""
    form = FeedForm(request.POST)
    if not form.is_valid():
        return _index_page(request, feed_form=form)
    try:
        source = feeds.feed_create(organisation=request.organisation, **form.cleaned_data)
    except TrellisError as exc:
        return _form_error(request, form, exc, feed_form=form)
    messages.success(
        request, f"Feed '{source.name}' added: it is polled within a minute, then on its schedule."
    )
    return _back("sources")


@require_POST
@member_required("models.train")
def models_default(request):
    """Train the default topic and sentiment models (the API's ``models/defaults``); the jobs to follow."""
    try:
        queued = defaults.monitor_defaults_install(organisation=request.organisation, created_by=request.user)
    except TrellisError as exc:  # both active or under way, the models quota
        messages.error(request, exc.message)
        return _back()
    names = ", ".join(f"{job.params.get('task')} (job #{job.pk})" for job in queued)
    messages.success(
        request, f"Training the default models: {names}. Documents are classified once they are ready."
    )
    return _back()


@member_required()
def feed(request):
    """The live feed's latest items as JSON: what the dashboard polls between socket frames."""
    return JsonResponse({"documents": dashboard.feed_latest(organisation=request.organisation)})


def _filter_form(request) -> DocumentFilterForm:
    organisation = request.organisation
    return DocumentFilterForm(
        request.GET,
        topics=dashboard.topic_choices(organisation=organisation),
        sources=list(selectors.source_list(organisation=organisation)),
        entities=list(selectors.entity_list(organisation=organisation)),
    )


def _alert_or_404(request, form: DocumentFilterForm):
    alert_id = form.cleaned_data.get("alert")
    if alert_id is None:
        return None
    alert = selectors.alert_get(organisation=request.organisation, alert_id=alert_id)
    if alert is None:
        raise Http404("No such alert.")
    return alert


def _original_or_404(request, form: DocumentFilterForm):
    original_id = form.cleaned_data.get("copy_of")
    if original_id is None:
        return None
    original = selectors.document_get(organisation=request.organisation, document_id=original_id)
    if original is None:
        raise Http404("No such document.")
    return original


@member_required()
def documents(request):
    """The drill-down: documents with filters, 50 a page, each correctable by analysts (monitor.correct)."""
    organisation = request.organisation
    form = _filter_form(request)
    context: dict = {"form": form, "can_correct": role_can(request.role, "monitor.correct")}
    if not form.is_valid():
        return render(request, "finance_monitor/documents.html", context, status=400)
    context["alert"] = _alert_or_404(request, form)
    context["original"] = _original_or_404(request, form)
    found = selectors.document_list(organisation=organisation, **form.selector_filters())
    page = Paginator(found, PAGE_SIZE).get_page(form.cleaned_data.get("page") or 1)
    query = request.GET.copy()
    query.pop("page", None)
    context.update(
        page=page,
        query=query.urlencode(),
        topics=dashboard.topic_choices(organisation=organisation),
        sentiments=["positive", "neutral", "negative"],
    )
    return render(request, "finance_monitor/documents.html", context)


@member_required()
def documents_csv(request):
    """The filtered documents as CSV, streamed (formula-safe cells: ``services.dashboard``)."""
    form = _filter_form(request)
    if not form.is_valid():
        errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
        return JsonResponse(
            {"error": {"code": "invalid", "message": "Invalid filters.", "details": errors}}, status=400
        )
    _alert_or_404(request, form)
    found = selectors.document_list(organisation=request.organisation, **form.selector_filters())
    response = StreamingHttpResponse(
        dashboard.documents_csv_lines(documents=found), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="documents-{stamp}.csv"'
    return response


@require_POST
@member_required("monitor.correct")
def document_correct(request, document_id: int):
    """An analyst's topic and/or sentiment for a document (``services.corrections``); back to the list."""
    organisation = request.organisation
    if selectors.document_get(organisation=organisation, document_id=document_id) is None:
        raise Http404("No such document.")
    form = CorrectionForm(request.POST, topics=dashboard.topic_choices(organisation=organisation))
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = reverse("finance_monitor:documents")
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errs in form.errors.values() for e in errs))
        return HttpResponseRedirect(back)
    try:
        corrections.document_correct(
            organisation=organisation,
            document_id=document_id,
            topic=form.cleaned_data["topic"] or None,
            sentiment=form.cleaned_data["sentiment"] or None,
        )
    except NotFound as exc:
        raise Http404(str(exc)) from exc
    except InvalidInput as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(back)
    messages.success(request, f"Document {document_id} corrected.")
    return HttpResponseRedirect(back)


def _rule_form(request, data=None) -> AlertRuleForm:
    organisation = request.organisation
    return AlertRuleForm(
        data,
        entities=list(selectors.entity_list(organisation=organisation)),
        topics=dashboard.topic_choices(organisation=organisation),
    )


def _alerts_page(request, rule_form: AlertRuleForm | None = None):
    organisation = request.organisation
    rows = [
        (
            alert,
            selectors.alert_evidence(organisation=organisation, alert=alert)[:10],
            selectors.delivery_list(organisation=organisation, alert_id=alert.pk)[:10],
        )
        for alert in selectors.alert_list(organisation=organisation)[:30]
    ]
    context = {"rows": rows, "rules": selectors.alert_rule_list(organisation=organisation)}
    if request.GET.get("partial"):
        return render(request, "finance_monitor/alert_list.html", context)
    can_manage = role_can(request.role, "monitor.manage")
    context["can_manage"] = can_manage
    if can_manage:
        context["rule_form"] = rule_form or _rule_form(request)
    status = 400 if rule_form is not None and rule_form.errors else 200
    return render(request, "finance_monitor/alerts.html", context, status=status)


@member_required()
def alerts(request):
    """The latest alerts with their evidence and deliveries, the rules, and for ``monitor.manage`` the rule
    form; ``?partial=1`` is the list alone (live.js)."""
    return _alerts_page(request)


def _alerts_back():
    return HttpResponseRedirect(reverse("finance_monitor:alerts") + "#rules")


def _rule_or_404(request, rule_id: int):
    rule = selectors.alert_rule_get(organisation=request.organisation, rule_id=rule_id)
    if rule is None:
        raise Http404("No such alert rule.")
    return rule


@require_POST
@member_required("monitor.manage")
def alert_rule_add(request):
    """A new alert rule (``services.alerts.alert_rule_save``, the API's); its refusal beside the field."""
    form = _rule_form(request, request.POST)
    if not form.is_valid():
        return _alerts_page(request, rule_form=form)
    try:
        rule = alert_rules.alert_rule_save(organisation=request.organisation, **form.service_fields())
    except TrellisError as exc:
        field = exc.details.get("field")
        form.add_error(field if field in form.fields else None, exc.message)
        return _alerts_page(request, rule_form=form)
    messages.success(
        request,
        f"Rule '{rule.name}' created: it is evaluated on every {rule.granularity} bucket from now on.",
    )
    return _alerts_back()


@require_POST
@member_required("monitor.manage")
def alert_rule_enabled(request, rule_id: int):
    """Turn a rule on or off (``enabled`` = "1" or "0"; the API's PATCH of ``enabled``)."""
    rule = _rule_or_404(request, rule_id)
    value = request.POST.get("enabled")
    if value not in ("0", "1"):
        messages.error(request, "Say whether the rule is to be enabled (1) or disabled (0).")
        return _alerts_back()
    try:
        rule = alert_rules.alert_rule_save(organisation=request.organisation, rule=rule, enabled=value == "1")
    except TrellisError as exc:  # its webhook's address is refused now, for one
        messages.error(request, f"Rule '{rule.name}' was not changed: {exc.message}")
        return _alerts_back()
    messages.success(request, f"Rule '{rule.name}' {'enabled' if rule.enabled else 'disabled'}.")
    return _alerts_back()


@require_POST
@member_required("monitor.manage")
def alert_rule_delete(request, rule_id: int):
    """Delete a rule with its alerts (the API's DELETE)."""
    rule = _rule_or_404(request, rule_id)
    name = rule.name
    gone = alert_rules.alert_rule_delete(rule=rule)
    messages.success(request, f"Rule '{name}' deleted with its {gone} alert{'s' if gone != 1 else ''}.")
    return _alerts_back()
