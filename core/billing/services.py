"""Writes for billing: subscriptions, plan changes and the usage ledger with quota enforcement.

``usage_record`` is the one door into the ledger: in one transaction it appends the line and adds it
to the period's ``UsageCounter`` through a conditional UPDATE that is also the quota check, so two
concurrent requests cannot both take the last unit, a refused request writes nothing, and a check reads
one row however long the ledger grows. Idempotency keys make retries free.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar, overload

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from core.billing import deferred
from core.billing.meters import meter_spec, meter_specs, stock_count, stock_meters
from core.billing.models import (
    Plan,
    PlanLimit,
    Subscription,
    SubscriptionStatus,
    UsageCounter,
    UsageEvent,
)
from core.errors import InvalidInput, NotFound, QuotaExceeded
from core.privacy.audit import Action, audit_record

TRIAL_PLAN = "trial"


_last_period: tuple[datetime, datetime, str] | None = None  # the current period, as last made


def period_bounds(now: datetime | None = None) -> tuple[datetime, datetime, str]:
    """The billing period of ``now`` (default: the current one): the calendar month in UTC. Every metered
    request asks for the current one, several times: the last one made is kept while the clock is in it."""
    global _last_period
    if now is None:
        now = timezone.now()
        last = _last_period
        if last is not None and last[0] <= now < last[1]:
            return last
        _last_period = _month(now)
        return _last_period
    return _month(now)


def _month(now: datetime) -> tuple[datetime, datetime, str]:
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end, start.strftime("%Y-%m")


def subscription_start_trial(*, organisation) -> Subscription:
    plan = Plan.objects.get(code=TRIAL_PLAN)
    now = timezone.now()
    return Subscription.objects.create(
        organisation=organisation,
        plan=plan,
        status=SubscriptionStatus.TRIALING,
        started_at=now,
        trial_ends_at=now + timedelta(days=plan.trial_days or 14),
    )


def subscription_for(*, organisation) -> Subscription:
    """The organisation's subscription and plan, remembered on this organisation instance.

    A request reads it for the rate limit, the quota check and the metering; the instance lives for one
    request (or one job), so a plan change is seen by the next one. ``subscription_change_plan`` refreshes it.
    """
    cached = getattr(organisation, "_subscription", None)
    if cached is not None:
        return cached
    subscription = Subscription.objects.select_related("plan").filter(organisation=organisation).first()
    if subscription is None:
        subscription = subscription_start_trial(organisation=organisation)
    organisation._subscription = subscription
    return subscription


@transaction.atomic
def subscription_change_plan(*, organisation, plan_code: str, actor: object = None) -> Subscription:
    plan = Plan.objects.filter(code=plan_code, is_public=True).first()
    if plan is None:
        raise InvalidInput(f"Unknown plan '{plan_code}'.", details={"field": "plan"})
    subscription = Subscription.objects.select_for_update().get(
        pk=subscription_for(organisation=organisation).pk
    )
    if plan.code == TRIAL_PLAN and subscription.plan.code != TRIAL_PLAN:
        raise InvalidInput(
            "The free trial cannot be restarted; choose a paid plan.", details={"field": "plan"}
        )
    if plan.pk == subscription.plan_id:
        raise InvalidInput(f"You are already on {plan.name}.", details={"field": "plan"})
    for meter in stock_meters():
        used = stock_count(organisation=organisation, meter=meter)
        if used > plan.limit_for(meter):
            raise InvalidInput(
                f"{plan.name} allows {plan.limit_for(meter)} {meter_spec(meter).label.lower()}, "
                f"you have {used}: "
                "reduce them before downgrading.",
                details={"field": "plan", "meter": meter},
            )
    subscription.plan = plan
    subscription.status = (
        SubscriptionStatus.TRIALING if plan.code == TRIAL_PLAN else SubscriptionStatus.ACTIVE
    )
    previous = subscription.plan.code
    subscription.save(update_fields=["plan", "status", "updated_at"])
    audit_record(
        organisation=organisation,
        action=Action.PLAN_CHANGE,
        actor=actor,
        target=f"subscription:{subscription.pk}",
        details={"from": previous, "to": plan.code},
    )
    organisation._subscription = subscription
    return subscription


def setup_plan_code(organisation) -> str:
    return f"setup-{organisation.pk}"


@transaction.atomic
def subscription_cover_set_up(*, organisation, reason: str) -> Subscription:
    """Keep what a set-up has spent out of what the organisation's people can try (the demo's seeders).

    The organisation moves to a private plan of its own (``setup-<id>``): its current plan's price, trial
    and rate, and on every meter that plan's limit plus what the organisation has used so far (flow meters
    in this period, stock meters now). Idempotent: an organisation already on its set-up plan stays there.
    """
    subscription = (
        Subscription.objects.select_for_update().select_related("plan").get(organisation=organisation)
    )
    base, code = subscription.plan, setup_plan_code(organisation)
    if base.code == code:
        return subscription
    plan = Plan.objects.create(
        code=code,
        name=f"{base.name} (set-up included)",
        price_cents=base.price_cents,
        currency=base.currency,
        trial_days=base.trial_days,
        is_public=False,
        requests_per_minute=base.requests_per_minute,
    )
    covered: dict[str, int] = {}
    for spec in meter_specs():
        used = meter_used(organisation=organisation, meter=spec.code)
        spent = math.ceil(used) if used > 0 else 0
        PlanLimit.objects.create(plan=plan, meter_id=spec.code, limit=base.limit_for(spec.code) + spent)
        if spent:
            covered[spec.code] = spent
    subscription.plan = plan
    subscription.save(update_fields=["plan", "updated_at"])
    audit_record(
        organisation=organisation,
        action=Action.PLAN_CHANGE,
        target=f"subscription:{subscription.pk}",
        details={"from": base.code, "to": code, "reason": reason, "covered": covered},
    )
    organisation._subscription = subscription
    return subscription


def _amount(value: float | Decimal) -> str:
    value = float(value)
    return str(int(value)) if value == int(value) else f"{value:.3f}".rstrip("0")


def _noun(meter: str) -> str:
    label = meter_spec(meter).label
    return label if label[:2].isupper() else label[0].lower() + label[1:]


def quota_refusal(
    *, meter: str, limit: int, used: float, period: str | None, quantity: float | Decimal
) -> QuotaExceeded:
    """The 402 for ``quantity`` more of ``meter``: monthly meters name their month, stock meters (seats,
    models, stored records) the plan's total; a request larger than what is left says how much it adds."""
    noun, monthly = _noun(meter), meter_spec(meter).monthly
    allowance = f"{_amount(limit)} {noun} per month" if monthly else f"{_amount(limit)} {noun} on your plan"
    remaining = max(float(limit) - float(used), 0.0)
    if remaining <= 0:
        reason = (
            f"Your plan's {allowance} are used up for {period}."
            if monthly
            else f"All {allowance} are in use."
        )
    else:
        of = f"your plan's {allowance} remain for {period}" if monthly else f"the {allowance} remain"
        reason = f"This request adds {_amount(quantity)} {noun}, but only {_amount(remaining)} of {of}."
    return QuotaExceeded(
        meter=meter,
        limit=limit,
        used=used,
        period=period if monthly else None,
        reason=reason,
        requested=float(quantity),
    )


def _trial_guard(subscription: Subscription, meter: str, period: str | None) -> None:
    if subscription.status == SubscriptionStatus.CANCELLED:
        raise QuotaExceeded(
            meter=meter, limit=0, used=0, period=period, reason="The subscription is cancelled."
        )
    ends = subscription.trial_ends_at
    if subscription.status == SubscriptionStatus.TRIALING and ends and ends <= timezone.now():
        raise QuotaExceeded(
            meter=meter,
            limit=0,
            used=0,
            period=period,
            reason=f"The free trial ended on {ends:%Y-%m-%d}; choose a plan on the billing page to continue.",
        )


def quota_guard(*, subscription: Subscription, meter: str, period: str | None) -> None:
    """Refuse any charge on a cancelled subscription or an ended trial (QuotaExceeded)."""
    _trial_guard(subscription, meter, period)


def flow_used(*, organisation, meter: str, since: datetime) -> Decimal:
    """The ledger's sum since a moment (audits and exports; quota checks read the period counter)."""
    total = (
        UsageEvent.objects.for_org(organisation)
        .filter(meter=meter, created_at__gte=since)
        .aggregate(total=Sum("quantity"))["total"]
    )
    return total or Decimal(0)


def period_used(*, organisation, meter: str, period: str | None = None) -> Decimal:
    """How much of a flow meter the organisation used in a billing period (default: the current one)."""
    period = period or period_bounds()[2]
    used = (
        UsageCounter.objects.for_org(organisation)
        .filter(meter=meter, period=period)
        .values_list("used", flat=True)
        .first()
    )
    return used if used is not None else Decimal(0)


def meter_used(*, organisation, meter: str, period: str | None = None) -> Decimal:
    """What the organisation has used of a meter: the period's total for a monthly meter (default: the current
    period), the current count for a stock meter."""
    if meter_spec(meter).monthly:
        return period_used(organisation=organisation, meter=meter, period=period)
    return Decimal(stock_count(organisation=organisation, meter=meter))


def quota_check(*, organisation, meter: str, quantity: float = 1) -> Subscription:
    """Raise QuotaExceeded if ``quantity`` more of ``meter`` would pass the plan's limit."""
    subscription = subscription_for(organisation=organisation)
    monthly = meter_spec(meter).monthly
    period: str | None = period_bounds()[2] if monthly else None
    _trial_guard(subscription, meter, period)
    limit = subscription.plan.limit_for(meter)
    if monthly:
        used: float = float(period_used(organisation=organisation, meter=meter, period=period))
    else:
        used = stock_count(organisation=organisation, meter=meter)
    if used + float(quantity) > limit:
        raise quota_refusal(meter=meter, limit=limit, used=used, period=period, quantity=quantity)
    return subscription


def seats_check(*, organisation, adding: int, pending_invitation: bool = False) -> None:
    """Seats count members plus pending invitations; accepting an invitation moves one, adds none."""
    quota_check(organisation=organisation, meter="seats", quantity=0 if pending_invitation else adding)


def usage_record(
    *,
    organisation,
    meter: str,
    quantity: float = 1,
    idempotency_key: str | None = None,
    api_key=None,
    metadata: dict | None = None,
    enforce: bool = True,
) -> UsageEvent:
    """Append to the ledger, enforcing the plan. Same idempotency key -> the first event, no new charge."""
    if not meter_spec(meter).monthly:
        raise InvalidInput(f"'{meter}' is not a metered flow.")
    if idempotency_key:
        existing = UsageEvent.objects.for_org(organisation).filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    amount = Decimal(str(quantity))
    try:
        with transaction.atomic():
            event = UsageEvent.all_tenants.create(
                organisation=organisation,
                meter=meter,
                quantity=amount,
                idempotency_key=idempotency_key or None,
                api_key=api_key,
                metadata=metadata or {},
            )
            _add_to_counter(organisation, meter, amount, event.created_at, enforce=enforce)
            period = period_bounds(event.created_at)[2]
            transaction.on_commit(
                lambda: deferred.counter_add(
                    organisation=organisation, meter=meter, period=period, quantity=amount
                )
            )
            return event
    except IntegrityError:
        existing = UsageEvent.objects.for_org(organisation).filter(idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing


T = TypeVar("T")


@dataclass(frozen=True)
class Charge(Generic[T]):
    """What a ``metered`` function returns when it used another quantity than was checked (0: nothing to
    charge, e.g. an answer dropped because a person took over) or learned metadata while running."""

    result: T
    quantity: float | None = None  # None: the quantity that was checked
    metadata: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def of(outcome: "T | Charge[T]", *, quantity: float, metadata: dict | None) -> "tuple[T, float, dict]":
        """What a metered run returned as (result, quantity to charge, the line's metadata)."""
        charge = outcome if isinstance(outcome, Charge) else Charge(outcome)
        amount = quantity if charge.quantity is None else charge.quantity
        return charge.result, amount, {**(metadata or {}), **charge.metadata}


@overload
def metered(
    run: Callable[[], Charge[T]],
    *,
    organisation,
    meter: str,
    quantity: float = 1,
    idempotency_key: str | None = None,
    api_key=None,
    metadata: dict | None = None,
) -> T: ...


@overload
def metered(
    run: Callable[[], T],
    *,
    organisation,
    meter: str,
    quantity: float = 1,
    idempotency_key: str | None = None,
    api_key=None,
    metadata: dict | None = None,
) -> T: ...


def metered(
    run: Callable[[], T | Charge[T]],
    *,
    organisation,
    meter: str,
    quantity: float = 1,
    idempotency_key: str | None = None,
    api_key=None,
    metadata: dict | None = None,
) -> T:
    """The one way to meter work: check the quota for ``quantity``, ``run()``, then charge what succeeded.

    ``QuotaExceeded`` is raised before anything runs; an exception from ``run`` propagates and charges
    nothing. ``run`` returns its result, or ``Charge(result, quantity=..., metadata=...)`` to charge another
    quantity (0: nothing). The ledger line carries ``idempotency_key``: a second call with a key already in
    the ledger runs again but is not charged again. The line is written without re-checking the limit
    (the work is done; a concurrent caller may take the month a few units past its limit, never further
    than the requests in flight).
    """
    quota_check(organisation=organisation, meter=meter, quantity=quantity)
    result, amount, line = Charge.of(run(), quantity=quantity, metadata=metadata)
    if amount:
        usage_record(
            organisation=organisation,
            meter=meter,
            quantity=amount,
            idempotency_key=idempotency_key,
            api_key=api_key,
            metadata=line,
            enforce=False,
        )
    return result


def _add_to_counter(organisation, meter: str, amount: Decimal, when: datetime, *, enforce: bool) -> None:
    """Add ``amount`` to the period's counter; with ``enforce``, only while the plan's limit allows it.

    The conditional UPDATE holds the counter row until commit, and PostgreSQL re-checks its WHERE against the
    committed value for a waiting caller, so the last unit cannot be taken twice.
    """
    period = period_bounds(when)[2]
    counter = UsageCounter.objects.for_org(organisation).filter(meter=meter, period=period)
    limit = None
    if enforce:
        subscription = subscription_for(organisation=organisation)
        _trial_guard(subscription, meter, period)
        limit = subscription.plan.limit_for(meter)
    for _attempt in range(5):
        target = counter if limit is None else counter.filter(used__lte=Decimal(limit) - amount)
        if target.update(used=F("used") + amount):
            return
        used = counter.values_list("used", flat=True).first()
        if used is None:  # the period's first event: create the row (or meet a concurrent caller's), then add
            try:
                with transaction.atomic():
                    UsageCounter.all_tenants.create(organisation=organisation, meter=meter, period=period)
            except IntegrityError:
                pass
        elif limit is not None and used > Decimal(limit) - amount:
            raise quota_refusal(meter=meter, limit=limit, used=float(used), period=period, quantity=amount)
        # else another caller committed the row between our UPDATE and SELECT: try again
    raise RuntimeError(f"could not update the {meter} counter for {period}")


def plan_get(*, code: str) -> Plan:
    plan = Plan.objects.filter(code=code).first()
    if plan is None:
        raise NotFound(f"Unknown plan '{code}'.")
    return plan
