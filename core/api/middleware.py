"""HTTP-level guards for /api/: body size before anything reads it, and metering of API calls."""

import logging

from django.conf import settings

from core.api.errors import json_error
from core.billing import services as billing
from core.billing.models import Meter

log = logging.getLogger(__name__)
UPLOAD_PATHS = ("/api/datasets/", "/api/batch-predictions/")


class ApiBodyLimitMiddleware:
    """Refuse oversized API bodies with 413 before they are read (uploads have their own limit)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            limit = (
                settings.UPLOAD_MAX_BYTES
                if request.path.startswith(UPLOAD_PATHS)
                else settings.API_MAX_BODY_BYTES
            )
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_error("invalid", "Invalid Content-Length header.", 400)
            if length > limit:
                return json_error(
                    "too_large", f"The request body is {length} bytes; the limit is {limit}.", 413
                )
        return self.get_response(request)


class ApiUsageMiddleware:
    """Record each accepted API-key call in the usage ledger. Refused calls (4xx, 5xx) and idempotent
    replays record nothing."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        key = getattr(request, "api_key", None)
        replayed = response.has_header("Idempotent-Replayed")  # a retry answered from the stored answer
        if key is not None and response.status_code < 400 and not replayed:
            try:
                billing.usage_record(
                    organisation=key.organisation,
                    meter=Meter.API_CALLS,
                    api_key=key,
                    enforce=False,
                    metadata={
                        "method": request.method,
                        "path": request.path[:200],
                        "status": response.status_code,
                    },
                )
            except Exception:  # noqa: BLE001 - metering must not turn a served call into an error
                log.exception("could not meter API call")
        return response
