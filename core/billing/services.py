"""Writes for billing: subscriptions, plan changes and the usage ledger with quota enforcement.

``usage_record`` is the one door into the ledger: it checks the plan's limit under a lock on the
subscription row, so two concurrent requests cannot both take the last unit, and a refused
request writes nothing. Idempotency keys make retries free.
"""

from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from core.billing.meters import stock_count
from core.billing.models import FLOW_METERS, Meter, Plan, Subscription, SubscriptionStatus, UsageEvent
from core.errors import InvalidInput, NotFound, QuotaExceeded

TRIAL_PLAN = "trial"


def period_bounds(now: datetime | None = None) -> tuple[datetime, datetime, str]:
    """The current billing period: the calendar month in UTC."""
    now = now or timezone.now()
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
    subscription = Subscription.objects.select_related("plan").filter(organisation=organisation).first()
    if subscription is None:
        subscription = subscription_start_trial(organisation=organisation)
    return subscription


@transaction.atomic
def subscription_change_plan(*, organisation, plan_code: str) -> Subscription:
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
    for meter in (Meter.SEATS, Meter.MODELS, Meter.STORED_RECORDS):
        used = stock_count(organisation=organisation, meter=meter)
        if used > plan.limit_for(meter):
            raise InvalidInput(
                f"{plan.name} allows {plan.limit_for(meter)} {Meter(meter).label.lower()}, you have {used}: "
                "reduce them before downgrading.",
                details={"field": "plan", "meter": meter},
            )
    subscription.plan = plan
    subscription.status = (
        SubscriptionStatus.TRIALING if plan.code == TRIAL_PLAN else SubscriptionStatus.ACTIVE
    )
    subscription.save(update_fields=["plan", "status", "updated_at"])
    return subscription


def _trial_guard(subscription: Subscription, meter: str, period: str) -> None:
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


def flow_used(*, organisation, meter: str, since: datetime) -> Decimal:
    total = (
        UsageEvent.objects.for_org(organisation)
        .filter(meter=meter, created_at__gte=since)
        .aggregate(total=Sum("quantity"))["total"]
    )
    return total or Decimal(0)


def quota_check(*, organisation, meter: str, quantity: float = 1) -> Subscription:
    """Raise QuotaExceeded if ``quantity`` more of ``meter`` would pass the plan's limit."""
    subscription = subscription_for(organisation=organisation)
    start, _end, period = period_bounds()
    _trial_guard(subscription, meter, period)
    limit = subscription.plan.limit_for(meter)
    if meter in FLOW_METERS:
        used: float = float(flow_used(organisation=organisation, meter=meter, since=start))
    else:
        used = stock_count(organisation=organisation, meter=meter)
    if used + float(quantity) > limit:
        raise QuotaExceeded(meter=meter, limit=limit, used=used, period=period)
    return subscription


def seats_check(*, organisation, adding: int, pending_invitation: bool = False) -> None:
    """Seats count members plus pending invitations; accepting an invitation moves one, adds none."""
    quota_check(organisation=organisation, meter=Meter.SEATS, quantity=0 if pending_invitation else adding)


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
    if meter not in FLOW_METERS:
        raise InvalidInput(f"'{meter}' is not a metered flow.")
    if idempotency_key:
        existing = UsageEvent.objects.for_org(organisation).filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    try:
        with transaction.atomic():
            # The row lock serialises concurrent consumers of one organisation's quota.
            Subscription.objects.select_for_update().filter(organisation=organisation).first()
            if enforce:
                quota_check(organisation=organisation, meter=meter, quantity=quantity)
            return UsageEvent.all_tenants.create(
                organisation=organisation,
                meter=meter,
                quantity=Decimal(str(quantity)),
                idempotency_key=idempotency_key or None,
                api_key=api_key,
                metadata=metadata or {},
            )
    except IntegrityError:
        existing = UsageEvent.objects.for_org(organisation).filter(idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing


def plan_get(*, code: str) -> Plan:
    plan = Plan.objects.filter(code=code).first()
    if plan is None:
        raise NotFound(f"Unknown plan '{code}'.")
    return plan
