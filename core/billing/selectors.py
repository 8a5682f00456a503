"""Reads for billing: the usage page and the API's usage endpoint share ``usage_summary``."""

from dataclasses import dataclass

from django.db.models import QuerySet

from core.billing.meters import meter_specs
from core.billing.models import Plan, UsageEvent
from core.billing.services import meter_used, period_bounds, subscription_for


@dataclass(frozen=True)
class MeterUsage:
    meter: str
    label: str
    used: float
    limit: int
    kind: str  # "monthly" or "current"
    unit: str = ""

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.used / self.limit)) if self.limit else 100


@dataclass(frozen=True)
class UsageSummary:
    period: str
    period_start: str
    period_end: str
    plan_code: str
    plan_name: str
    status: str
    trial_ends_at: str | None
    requests_per_minute: int
    meters: list[MeterUsage]


def usage_summary(*, organisation) -> UsageSummary:
    subscription = subscription_for(organisation=organisation)
    plan = subscription.plan
    start, end, period = period_bounds()
    meters = []
    for spec in meter_specs():
        used = float(meter_used(organisation=organisation, meter=spec.code, period=period))
        kind = "monthly" if spec.monthly else "current"
        meters.append(MeterUsage(spec.code, spec.label, used, plan.limit_for(spec.code), kind, spec.unit))
    return UsageSummary(
        period=period,
        period_start=start.isoformat(),
        period_end=end.isoformat(),
        plan_code=plan.code,
        plan_name=plan.name,
        status=subscription.status,
        trial_ends_at=subscription.trial_ends_at.isoformat() if subscription.trial_ends_at else None,
        requests_per_minute=plan.requests_per_minute,
        meters=meters,
    )


def usage_events_recent(*, organisation, limit: int = 50) -> QuerySet[UsageEvent]:
    return (
        UsageEvent.objects.for_org(organisation)
        .select_related("api_key")
        .order_by("-created_at", "-id")[:limit]
    )


def usage_detail(metadata: object) -> str:
    """A ledger line's metadata in words for the usage page: a request as "GET /api/... -> 200", a range of
    ids as "documents 1-120", a flag as its name, every other key as "<key> <value>" (products write their
    own keys); "" when there is none."""
    if not isinstance(metadata, dict) or not metadata:
        return ""
    if metadata.get("path"):
        return f"{metadata.get('method', '')} {metadata['path']} → {metadata.get('status', '')}".strip()
    parts = []
    for key, value in metadata.items():
        name = str(key).replace("_", " ")
        if value is True:
            parts.append(name)
        elif isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) for v in value):
            first, last = value
            parts.append(f"{name} {first}" if first == last else f"{name} {first}–{last}")
        elif isinstance(value, str | int | float) and value is not False:
            parts.append(f"{name} {str(value).replace('_', ' ')}")
    return " · ".join(parts)


def usage_event_list(*, organisation, meter: str | None = None) -> QuerySet[UsageEvent]:
    qs = UsageEvent.objects.for_org(organisation).select_related("api_key").order_by("-created_at", "-id")
    return qs.filter(meter=meter) if meter else qs


def plan_list() -> QuerySet[Plan]:
    return Plan.objects.filter(is_public=True).order_by("price_cents")
