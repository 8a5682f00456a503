"""Privacy pages under the organisation's settings: audit log, export, import and deletion (owners only)."""

from django.contrib.auth import logout
from django.core.paginator import Paginator
from django.shortcuts import redirect, render

from core.errors import InvalidInput, TrellisError
from core.privacy.audit import audit_event_list
from core.privacy.export import export_archive_file, export_expires_at, export_list, organisation_export_start
from core.privacy.importing import organisation_data, organisation_import
from core.privacy.services import organisation_delete
from core.web.views import member_required


@member_required("org.privacy")
def audit_log(request):
    page = Paginator(audit_event_list(organisation=request.organisation), 50).get_page(
        request.GET.get("page")
    )
    return render(request, "privacy/audit_log.html", {"page": page})


def _import(request) -> dict:
    upload = request.FILES.get("archive")
    if upload is None:
        raise InvalidInput("Choose an archive to import.", details={"field": "archive"})
    return organisation_import(organisation=request.organisation, actor=request.user, upload=upload)


@member_required("org.privacy")
def privacy(request):
    """The organisation's data: the audit log, its exports (POST action=export), an import into a new
    organisation (POST action=import), deletion (POST: type the name)."""
    error, status, imported, action = "", 200, None, request.POST.get("action", "delete")
    if request.method == "POST":
        name = request.organisation.name
        try:
            if action == "export":
                organisation_export_start(organisation=request.organisation, actor=request.user)
                return redirect("privacy")
            if action == "import":
                imported = _import(request)
            else:
                record = organisation_delete(
                    organisation=request.organisation,
                    actor=request.user,
                    confirm_name=request.POST.get("confirm"),
                )
                logout(request)
                return render(request, "privacy/deleted.html", {"name": name, "record": record})
        except TrellisError as exc:
            error, status = exc.message, exc.status
    exports = [
        {"job": job, "expires_at": export_expires_at(job), "ready": export_archive_file(job) is not None}
        for job in export_list(organisation=request.organisation)[:20]
    ]
    context = {
        "events": audit_event_list(organisation=request.organisation)[:10],
        "error": error,
        "error_for": action if error else "",
        "exports": exports,
        "imported": imported,
        "can_import": not organisation_data(organisation=request.organisation),
    }
    return render(request, "privacy/privacy.html", context, status=status)
