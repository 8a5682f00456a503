"""The finance monitor's pages: the dashboard (charts, live feed, alerts, source health), the drill-down of
documents with its CSV export and analysts' corrections, and the alert list. Each view validates with a form,
calls selectors and services, and renders; permissions by role (``member_required``) stay here."""

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from core.errors import InvalidInput, NotFound
from core.tenancy.roles import role_can
from core.web.views import member_required
from finance_monitor import selectors
from finance_monitor.forms import ChartForm, CorrectionForm, DocumentFilterForm
from finance_monitor.services import corrections, dashboard

PAGE_SIZE = 50


@member_required()
def index(request):
    """Charts of the chosen series (all, a topic, a watch-list entry), the busiest topics, the live feed,
    the latest alerts and the health of every source."""
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
        "pending": selectors.document_list(organisation=organisation, classified=False).count(),
    }
    return render(request, "finance_monitor/index.html", context, status=200 if valid else 400)


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


@member_required()
def alerts(request):
    """The latest alerts with their evidence and deliveries; ``?partial=1`` is the list alone (live.js)."""
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
    template = "alert_list.html" if request.GET.get("partial") else "alerts.html"
    return render(request, f"finance_monitor/{template}", context)
