"""Per-key requests-per-minute from the organisation's plan, counted in the shared cache."""

import time

from django.core.cache import cache
from rest_framework.throttling import BaseThrottle

from core.billing import services as billing
from core.billing.models import Meter
from core.tenancy.models import ApiKey


class ApiKeyRateThrottle(BaseThrottle):
    window = 60

    def allow_request(self, request, view) -> bool:
        key = request.auth
        if not isinstance(key, ApiKey):
            return True
        subscription = billing.subscription_for(organisation=key.organisation)
        now = time.time()
        bucket = f"rl:{key.pk}:{int(now // self.window)}"
        self._wait = self.window - (now % self.window)
        cache.add(bucket, 0, timeout=self.window + 5)
        count = cache.incr(bucket)
        if count > subscription.plan.requests_per_minute:
            return False
        # A call over the monthly API-call allowance is refused (402) before it does any work.
        billing.quota_check(organisation=key.organisation, meter=Meter.API_CALLS)
        return True

    def wait(self) -> float:
        return max(1.0, float(int(self._wait) + 1))
