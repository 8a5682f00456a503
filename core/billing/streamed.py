"""``services.metered`` at request speed: the quota read from Redis, the ledger line sent through the stream.

For work served on a hot request path (a recommendation, an answer, every API call's own meter) where the five
statements of a metered charge (the counter check, then ``BEGIN``, the ledger ``INSERT``, the counter
``UPDATE``, ``COMMIT``) cost more than the work. With Redis (``core.billing.deferred.enabled``): the period's
use is read from the Redis counter that the hot path keeps (``core.billing.deferred``; started from the
database's counter), the work runs, and what it used is added to that counter and appended to the ledger
stream in one Redis script; this process's flusher (``core.billing.flusher``) writes the line into
``UsageEvent`` and ``UsageCounter`` within its interval, under an idempotency key of its own, so a line is
never counted twice. Without Redis (the embedded default) it is ``services.metered``, and so it is inside
a database transaction (``streaming``): a charge made in a transaction belongs to it, and the flusher, on its
own connection, could not see what the transaction has not committed. Same contract as ``services.metered``:
``QuotaExceeded`` before anything runs (the same 402 message), nothing charged when ``run`` raises, ``Charge``
for another quantity.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from django.db import connection

from core.billing import deferred, flusher
from core.billing import services as billing
from core.errors import QuotaExceeded
from core.generations import prefetched

if TYPE_CHECKING:
    from core.generations import GenerationCache

T = TypeVar("T")


@dataclass
class Prepaid:
    """A reservation of ``quantity`` on ``meter`` that the caller made before the work, with its own admission
    (a product's fast route reserves its meter together with the call's ``api_calls`` in one Redis script,
    ``core.api.fast_routes``). The first ``metered_streamed`` of that meter and quantity inside ``prepaid``
    takes it instead of reserving, and leaves what it charges here (``amount``: 0 until its work returned,
    and when it charged nothing) for the caller to settle with its own ledger line in one script: two Redis
    calls a request instead of four."""

    organisation_id: int
    meter: str
    quantity: float
    taken: bool = False
    amount: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


_prepaid: ContextVar[Prepaid | None] = ContextVar("trellis_prepaid_meter", default=None)


@contextmanager
def prepaid(*, organisation, meter: str, quantity: float) -> Iterator[Prepaid]:
    """Inside the block, ``metered_streamed`` of that organisation, meter and quantity uses the caller's
    reservation (once, in the thread that entered the block); the caller settles ``Prepaid.amount`` against
    ``quantity`` after the block, also when the block raised after the work was metered (as a settlement
    inside ``metered_streamed`` would have stood), and gives the reservation back otherwise."""
    held = Prepaid(organisation_id=organisation.pk, meter=meter, quantity=float(quantity))
    token = _prepaid.set(held)
    try:
        yield held
    finally:
        _prepaid.reset(token)


def streaming() -> bool:
    """Whether a charge made here goes through the stream: Redis is there and no transaction is open."""
    return deferred.enabled() and not connection.in_atomic_block


def quota_check_streamed(*, organisation, meter: str, quantity: float = 1) -> None:
    """``services.quota_check`` of a monthly meter, the use read from the Redis counter when ``streaming``."""
    if not streaming():
        billing.quota_check(organisation=organisation, meter=meter, quantity=quantity)
        return
    subscription = billing.subscription_for(organisation=organisation)
    period = billing.period_bounds()[2]
    billing.quota_guard(subscription=subscription, meter=meter, period=period)
    limit = subscription.plan.limit_for(meter)
    used = deferred.used(organisation=organisation, meter=meter, period=period)
    if used + float(quantity) > limit:
        raise billing.quota_refusal(meter=meter, limit=limit, used=used, period=period, quantity=quantity)


def admission_refusal(
    admission: deferred.Admission, *, charges: list[tuple[str, float, int]], period: str
) -> QuotaExceeded:
    """The full stack's 402 for an ``admit`` that a quota refused (``admission.status == "quota"``), from the
    refusing meter's (meter, quantity, limit) among ``charges``."""
    meter, quantity, limit = next(c for c in charges if c[0] == admission.meter)
    return billing.quota_refusal(
        meter=meter, limit=limit, used=admission.used, period=period, quantity=quantity
    )


def usage_record_streamed(
    *, organisation, meter: str, quantity: float, api_key=None, metadata: dict | None = None
) -> None:
    """``services.usage_record`` (not enforced: the work is done) through the stream when ``streaming``."""
    if not streaming():
        billing.usage_record(
            organisation=organisation,
            meter=meter,
            quantity=quantity,
            api_key=api_key,
            metadata=metadata,
            enforce=False,
        )
        return
    entry = deferred.LedgerEntry(
        api_key_id=None if api_key is None else api_key.pk,
        request_id=deferred.new_request_id(),
        lines=[deferred.Line(meter, float(quantity), metadata or {})],
    )
    period = billing.period_bounds()[2]
    deferred.charge(organisation=organisation, meter=meter, quantity=quantity, period=period, ledger=entry)
    flusher.flusher_ensure()


def metered_streamed(
    run: Callable[[], Any],
    *,
    organisation,
    meter: str,
    quantity: float = 1,
    api_key=None,
    metadata: dict | None = None,
    upfront: bool = False,
    prefetch: Sequence["GenerationCache[Any]"] = (),
) -> Any:
    """``run()`` under ``meter``'s quota, its use charged through the ledger stream (see the module).

    The quantity is reserved on the Redis counter before the work runs, in one step with the limit's check,
    so requests served at the same moment cannot pass the limit together; the reservation is given back
    when ``run`` raises and corrected to what a ``Charge`` says was used. Inside ``prepaid`` for this meter
    and quantity, the caller's reservation is used and the caller settles it.

    ``upfront``: the charge is known before the work (``quantity``, with ``metadata``), so its ledger line is
    appended with the reservation, in the same Redis call, and nothing is left to settle when the work
    succeeds: one call a request instead of two. Work that raises, or returns a ``Charge`` of another
    quantity, is corrected by a line of the difference (the ledger's corrections are new negative lines),
    with ``"correction"`` in its metadata. ``prefetch``: generation caches whose tokens that same call reads,
    for ``run`` to use (``core.generations.prefetched``) instead of reading them itself."""
    if not streaming():
        return billing.metered(
            run, organisation=organisation, meter=meter, quantity=quantity, api_key=api_key, metadata=metadata
        )
    subscription = billing.subscription_for(organisation=organisation)
    period = billing.period_bounds()[2]
    billing.quota_guard(subscription=subscription, meter=meter, period=period)
    held = _prepaid.get()
    if (
        held is not None
        and not held.taken
        and (held.organisation_id, held.meter, held.quantity) == (organisation.pk, meter, float(quantity))
    ):
        held.taken = True  # reserved by the caller's admission: it settles what this leaves in ``held``
        result, amount, line = billing.Charge.of(run(), quantity=quantity, metadata=metadata)
        held.amount, held.metadata = float(amount), line
        return result
    limit = subscription.plan.limit_for(meter)
    api_key_id = None if api_key is None else api_key.pk
    charged = None
    if upfront:
        line = deferred.Line(meter, float(quantity), metadata or {})
        charged = deferred.LedgerEntry(api_key_id, deferred.new_request_id(), [line])
    keys = [key for cache in prefetch for key in cache.token_keys(organisation)]
    taken = deferred.take(
        organisation=organisation,
        meter=meter,
        quantity=quantity,
        limit=limit,
        period=period,
        ledger=charged,
        read=keys,
    )
    if taken.refused_at is not None:
        raise billing.quota_refusal(
            meter=meter, limit=limit, used=taken.refused_at, period=period, quantity=quantity
        )
    if charged is not None:
        flusher.flusher_ensure()
    try:
        with prefetched(dict(zip(keys, taken.values, strict=True))) if keys else nullcontext():
            result, amount, line_metadata = billing.Charge.of(run(), quantity=quantity, metadata=metadata)
    except BaseException:
        failed = "the work failed"
        _settled(organisation, meter, quantity, 0, period, api_key_id, charged, metadata or {}, failed)
        raise
    another = "the work used another quantity"
    _settled(organisation, meter, quantity, amount, period, api_key_id, charged, line_metadata, another)
    return result


def _settled(
    organisation,
    meter: str,
    reserved: float,
    used: float,
    period: str,
    api_key_id: int | None,
    charged: "deferred.LedgerEntry | None",
    metadata: dict[str, Any],
    correction: str,
) -> None:
    """End ``metered_streamed``'s reservation: the line of what was used (none for 0), or, when the reserved
    quantity was ``charged`` up front, a correction of the difference (none when there is none), which says
    ``correction`` in its metadata."""
    if charged is None:
        amount, line = float(used), metadata
    else:
        amount, line = float(used) - float(reserved), {**metadata, "correction": correction}
        if not amount:
            return
    entry = None
    if amount:
        entry = deferred.LedgerEntry(
            api_key_id=api_key_id,
            request_id=deferred.new_request_id(),
            lines=[deferred.Line(meter, amount, line)],
        )
    deferred.settle(
        organisation=organisation, meter=meter, reserved=reserved, used=used, period=period, ledger=entry
    )
    if entry is not None:
        flusher.flusher_ensure()
