from django.shortcuts import render

from core.web.views import member_required
from finance_monitor import selectors


@member_required()
def index(request):
    organisation = request.organisation
    sources = [
        (s, selectors.source_health(source=s)) for s in selectors.source_list(organisation=organisation)
    ]
    context = {
        "sources": sources,
        "documents": selectors.document_list(organisation=organisation)[:50],
        "alert_count": selectors.alert_list(organisation=organisation).count(),
    }
    return render(request, "finance_monitor/index.html", context)


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
