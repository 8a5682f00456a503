"""One error vocabulary for the whole platform.

Services raise these; the DRF exception handler, the consumers and the tasks translate them into
a stable JSON shape (``{"error": {"code", "message", "details"}}``), an error frame, or a failed job.
"""

from typing import Any


class TrellisError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidInput(TrellisError):
    code = "invalid"
    status = 400


class NotFound(TrellisError):
    code = "not_found"
    status = 404


class Forbidden(TrellisError):
    code = "forbidden"
    status = 403


class Conflict(TrellisError):
    code = "conflict"
    status = 409


class RateLimited(TrellisError):
    """Too many requests in a short time (HTTP 429)."""

    code = "rate_limited"
    status = 429


class QuotaExceeded(TrellisError):
    """Over the plan's allowance for a meter (HTTP 402): a monthly flow or a stock such as seats.

    ``period`` is the billing month for monthly meters and None for stock meters, which are not reset;
    ``requested`` is how much the refused request would have added.
    """

    code = "quota_exceeded"
    status = 402

    def __init__(
        self,
        *,
        meter: str,
        limit: int,
        used: float,
        period: str | None,
        reason: str = "",
        requested: float | None = None,
    ) -> None:
        message = reason or f"The {meter} quota of your plan ({limit} per month) is used up for {period}."
        details = {"meter": meter, "limit": limit, "used": used, "period": period}
        if requested is not None:
            details.update(requested=requested, remaining=max(float(limit) - float(used), 0.0))
        super().__init__(message, details=details)
        self.meter, self.limit, self.used, self.period = meter, limit, used, period
        self.requested = requested


class TenantScopeError(RuntimeError):
    """A tenant-owned table was queried without an organisation: a programming error, never a 4xx."""
