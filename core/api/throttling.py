"""Per-key requests-per-minute from the organisation's plan: a sliding window in the shared cache."""

import math

from rest_framework.throttling import BaseThrottle

from core.billing import services as billing
from core.billing.models import Meter
from core.billing.streamed import quota_check_streamed
from core.ratelimit import rate_limit_hit
from core.tenancy.models import ApiKey


class ApiKeyRateThrottle(BaseThrottle):
    window = 60

    def allow_request(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        subscription = billing.subscription_for(organisation=key.organisation)
        # Named by the key's random prefix, not its id: SQLite gives a deleted row's id to the next key, which
        # would inherit the old key's count for up to a minute (a new key refused on its first call).
        hit = rate_limit_hit(
            key=f"api-key:{key.prefix}", limit=subscription.plan.requests_per_minute, window=self.window
        )
        self._wait = hit.retry_after
        if not hit.allowed:
            return False
        # A call over the monthly API-call allowance is refused (402) before it does any work (the use read
        # from the Redis counter where the calls are charged through the ledger stream).
        quota_check_streamed(organisation=key.organisation, meter=Meter.API_CALLS)
        return True

    def wait(self) -> float:
        return max(1.0, float(math.ceil(self._wait)))
