"""Privacy pages under the organisation's settings: the audit log, export and deletion (owners only)."""

from django.contrib.auth import logout
from django.core.paginator import Paginator
from django.shortcuts import render

from core.errors import TrellisError
from core.privacy.audit import audit_event_list
from core.privacy.services import organisation_delete
from core.web.views import member_required


@member_required("org.privacy")
def audit_log(request):
    page = Paginator(audit_event_list(organisation=request.organisation), 50).get_page(
        request.GET.get("page")
    )
    return render(request, "privacy/audit_log.html", {"page": page})


@member_required("org.privacy")
def privacy(request):
    """The organisation's data: the audit log, an export of everything, deletion (POST: type the name)."""
    error, status = "", 200
    if request.method == "POST":
        name = request.organisation.name
        try:
            record = organisation_delete(
                organisation=request.organisation,
                actor=request.user,
                confirm_name=request.POST.get("confirm"),
            )
        except TrellisError as exc:
            error, status = exc.message, exc.status
        else:
            logout(request)
            return render(request, "privacy/deleted.html", {"name": name, "record": record})
    events = audit_event_list(organisation=request.organisation)[:10]
    return render(request, "privacy/privacy.html", {"events": events, "error": error}, status=status)
