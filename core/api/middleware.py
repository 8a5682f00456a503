"""HTTP-level guards for /api/: metering of API calls (body sizes: ``core.web.middleware``)."""

import logging

from core.billing.models import Meter
from core.billing.streamed import usage_record_streamed

log = logging.getLogger(__name__)


class ApiUsageMiddleware:
    """Record each accepted API-key call in the usage ledger. Refused calls (4xx, 5xx) and idempotent
    replays record nothing. With Redis the line goes through the ledger stream (``core.billing.streamed``):
    one Redis call after the answer instead of a transaction of four statements."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        key = getattr(request, "api_key", None)
        replayed = response.has_header("Idempotent-Replayed")  # a retry answered from the stored answer
        if key is not None and response.status_code < 400 and not replayed:
            try:
                usage_record_streamed(
                    organisation=key.organisation,
                    meter=Meter.API_CALLS,
                    quantity=1,
                    api_key=key,
                    metadata={
                        "method": request.method,
                        "path": request.path[:200],
                        "status": response.status_code,
                    },
                )
            except Exception:  # noqa: BLE001 - metering must not turn a served call into an error
                log.exception("could not meter API call")
        return response
