"""Checks on every /api/ request before a view runs, and the JSON error shape for what Django answers itself.

- A path with a NUL character is not found (404, pages included), before any view looks it up.
- Query parameters with a NUL character are refused (400): PostgreSQL cannot compare text with NUL, so a
  filter such as ``?meter=%00`` would otherwise reach the database and fail there (500).
- A malformed ``Idempotency-Key`` header (empty, over 255 characters, not printable ASCII) is refused (400)
  before anything runs or is counted; so is any ``Idempotency-Key`` on a POST, PUT, PATCH or DELETE whose
  handler does not honour it (not wrapped in ``core.api.idempotency.idempotent``), so that a client never
  believes a retry is protected when it would run (and be charged) twice.
- Answers that Django writes itself under /api/ (400 for a Host outside ``ALLOWED_HOSTS`` or another
  suspicious request, 404 for an unknown path, 405, 500) come back in the API's JSON error shape, not as an
  HTML page.
"""

from django.conf import settings
from django.http import HttpResponseNotFound

from core.api.errors import json_error
from core.errors import InvalidInput

IDEMPOTENCY_KEY_MAX = 255
HONOURS_IDEMPOTENCY_KEY = "honours_idempotency_key"  # set on a handler by ``@idempotent``
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON_ERRORS = {
    400: (  # Django's own 400s: a Host outside ALLOWED_HOSTS (DisallowedHost), a suspicious request
        "bad_request",
        "The request was refused before it reached the API: its Host header names a host this server does "
        "not answer for, or the request is malformed.",
    ),
    404: ("not_found", "No such endpoint."),
    405: ("method_not_allowed", "This endpoint does not accept this method."),
    500: ("server_error", "The server failed to answer this request."),
}


def idempotency_key_problem(value: str) -> str | None:
    """Why an Idempotency-Key header value is unusable, or None when it is fine."""
    if not value:
        return "The Idempotency-Key header is empty."
    if len(value) > IDEMPOTENCY_KEY_MAX:
        return (
            f"The Idempotency-Key header is {len(value)} characters long; the limit is {IDEMPOTENCY_KEY_MAX}."
        )
    if not all(" " <= ch <= "~" for ch in value):
        return "The Idempotency-Key header may contain printable ASCII characters only."
    return None


def honours_idempotency_key(view_func, method: str) -> bool:  # noqa: ANN001
    """Whether the view's handler for ``method`` honours ``Idempotency-Key`` (DRF views: the method of the
    class that ``as_view`` made the view from)."""
    cls = getattr(view_func, "cls", None)
    handler = getattr(cls, method.lower(), None) if cls is not None else view_func
    return bool(getattr(handler, HONOURS_IDEMPOTENCY_KEY, False))


def _query_problem(request) -> tuple[str, str] | None:
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in value for value in values):
            return name.replace("\x00", "\\x00"), "Query parameters may not contain NUL characters."
    return None


class ApiRequestCheckMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        api = request.path.startswith("/api/") or request.path == "/api"
        if "\x00" in request.path:  # no page or object is named with a NUL; PostgreSQL cannot compare one
            return json_error(*_JSON_ERRORS[404], 404) if api else HttpResponseNotFound("Not found.")
        if not api:
            return self.get_response(request)
        problem = _query_problem(request)
        if problem is not None:
            name, message = problem
            return json_error("invalid", f"{message} ({name})", 400, details={"field": name})
        key = request.headers.get("Idempotency-Key")
        if key is not None:
            reason = idempotency_key_problem(key)
            if reason:
                return json_error("invalid", reason, 400, details={"field": "Idempotency-Key"})
        response = self.get_response(request)
        known = _JSON_ERRORS.get(response.status_code)
        is_json = response.get("Content-Type", "").startswith("application/json")
        if known and not is_json and not (response.status_code == 500 and settings.DEBUG):
            replaced = json_error(*known, response.status_code)
            if response.has_header("Allow"):
                replaced["Allow"] = response["Allow"]
            return replaced
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):  # noqa: ANN001, ARG002
        if not request.path.startswith("/api/") or request.method not in MUTATING_METHODS:
            return None
        if "Idempotency-Key" not in request.headers or honours_idempotency_key(view_func, request.method):
            return None
        return json_error(
            "invalid",
            f"This endpoint does not accept Idempotency-Key on {request.method}: the request was not run. "
            "Send it without the header (a retry then runs again), or see the API documentation for the "
            "endpoints that honour it.",
            400,
            details={"field": "Idempotency-Key"},
        )


def query_choice(request, name: str, choices) -> str | None:  # noqa: ANN001
    """A filter from the query string that must be one of ``choices``; None when absent or empty."""
    value = request.query_params.get(name) or None
    allowed = [str(c) for c in choices]
    if value is not None and value not in allowed:
        raise InvalidInput(f"{name} must be one of: {', '.join(allowed)}.", details={"field": name})
    return value
