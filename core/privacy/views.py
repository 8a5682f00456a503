"""Privacy pages under the organisation's settings: the audit log, export and deletion (owners only)."""

from django.core.paginator import Paginator
from django.shortcuts import render

from core.privacy.audit import audit_event_list
from core.web.views import member_required


@member_required("org.privacy")
def audit_log(request):
    page = Paginator(audit_event_list(organisation=request.organisation), 50).get_page(
        request.GET.get("page")
    )
    return render(request, "privacy/audit_log.html", {"page": page})


@member_required("org.privacy")
def privacy(request):
    """The organisation's data: the audit log, an export of everything, deletion."""
    events = audit_event_list(organisation=request.organisation)[:10]
    return render(request, "privacy/privacy.html", {"events": events})
