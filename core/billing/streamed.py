"""``services.metered`` at request speed: the quota read from Redis, the ledger line sent through the stream.

For work served on a hot request path (a recommendation, an answer) where the five statements of a metered
charge (the counter check, then ``BEGIN``, the ledger ``INSERT``, the counter ``UPDATE``, ``COMMIT``) cost
more than the work. With Redis (``core.billing.deferred.enabled``): the period's use is read from the Redis
counter that the hot path keeps (``core.billing.deferred``; started from the database's counter), the work
runs, and what it used is added to that counter and appended to the ledger stream in one Redis script; this
process's flusher (``core.billing.flusher``) writes the line into ``UsageEvent`` and ``UsageCounter`` within
its interval, under an idempotency key of its own, so a line is never counted twice. Without Redis (the
embedded default) it is ``services.metered``. Same contract as ``services.metered``: ``QuotaExceeded`` before
anything runs (the same 402 message), nothing charged when ``run`` raises, ``Charge`` for another quantity.
"""

from collections.abc import Callable
from typing import Any, TypeVar

from core.billing import deferred, flusher
from core.billing import services as billing

T = TypeVar("T")


def metered_streamed(
    run: Callable[[], Any],
    *,
    organisation,
    meter: str,
    quantity: float = 1,
    api_key=None,
    metadata: dict | None = None,
) -> Any:
    """``run()`` under ``meter``'s quota, its use charged through the ledger stream (see the module)."""
    if not deferred.enabled():
        return billing.metered(
            run, organisation=organisation, meter=meter, quantity=quantity, api_key=api_key, metadata=metadata
        )
    subscription = billing.subscription_for(organisation=organisation)
    period = billing.period_bounds()[2]
    billing.quota_guard(subscription=subscription, meter=meter, period=period)
    limit = subscription.plan.limit_for(meter)
    used = deferred.used(organisation=organisation, meter=meter, period=period)
    if used + float(quantity) > limit:
        raise billing.quota_refusal(meter=meter, limit=limit, used=used, period=period, quantity=quantity)
    result, amount, line = billing.Charge.of(run(), quantity=quantity, metadata=metadata)
    if amount:
        entry = deferred.LedgerEntry(
            api_key_id=None if api_key is None else api_key.pk,
            request_id=deferred.new_request_id(),
            lines=[deferred.Line(meter, float(amount), line)],
        )
        deferred.charge(organisation=organisation, meter=meter, quantity=amount, period=period, ledger=entry)
        flusher.flusher_start()
    return result
