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
    }
    return render(request, "finance_monitor/index.html", context)
