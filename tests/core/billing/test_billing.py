from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from core.billing import services as billing
from core.billing.models import Plan, Subscription, UsageEvent
from core.billing.selectors import usage_summary
from core.errors import InvalidInput, QuotaExceeded

pytestmark = pytest.mark.django_db


def test_seeded_plans_have_concrete_limits(make_org):
    plans = {p.code: p for p in Plan.objects.all()}
    assert set(plans) == {"trial", "pro", "enterprise"}
    assert plans["trial"].trial_days == 14 and plans["trial"].price_cents == 0
    for field in (
        "predictions_per_month",
        "training_jobs_per_month",
        "gpu_minutes_per_month",
        "max_models",
        "max_seats",
        "max_stored_records",
        "requests_per_minute",
    ):
        assert (
            0
            < getattr(plans["trial"], field)
            < getattr(plans["pro"], field)
            < getattr(plans["enterprise"], field)
        )


def test_usage_is_enforced_and_refusal_records_nothing(make_org):
    org, _ = make_org()
    limit = Plan.objects.get(code="trial").predictions_per_month
    billing.usage_record(organisation=org, meter="predictions", quantity=limit - 1)
    billing.usage_record(organisation=org, meter="predictions", quantity=1)
    before = UsageEvent.objects.for_org(org).count()
    with pytest.raises(QuotaExceeded) as exc:
        billing.usage_record(organisation=org, meter="predictions", quantity=1)
    assert exc.value.details == {
        "meter": "predictions",
        "limit": limit,
        "used": float(limit),
        "period": timezone.now().strftime("%Y-%m"),
        "requested": 1.0,
        "remaining": 0.0,
    }
    assert UsageEvent.objects.for_org(org).count() == before


def test_idempotency_key_charges_once(make_org):
    org, _ = make_org()
    a = billing.usage_record(organisation=org, meter="predictions", quantity=5, idempotency_key="req-1")
    b = billing.usage_record(organisation=org, meter="predictions", quantity=5, idempotency_key="req-1")
    assert a.pk == b.pk
    assert billing.flow_used(organisation=org, meter="predictions", since=billing.period_bounds()[0]) == 5


def test_ledger_is_append_only(make_org):
    org, _ = make_org()
    event = billing.usage_record(organisation=org, meter="predictions")
    with pytest.raises(RuntimeError):
        event.save()
    with pytest.raises(RuntimeError):
        event.delete()
    with pytest.raises(RuntimeError):
        UsageEvent.ledger.filter(pk=event.pk).update(quantity=0)
    if connection.vendor == "postgresql":
        from django.db import DatabaseError, transaction

        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            UsageEvent.all_tenants.filter(pk=event.pk).update(quantity=0)


def test_expired_trial_refuses_with_reason(make_org):
    org, _ = make_org()
    Subscription.objects.filter(organisation=org).update(trial_ends_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(QuotaExceeded, match="trial ended"):
        billing.usage_record(organisation=org, meter="predictions")
    billing.subscription_change_plan(organisation=org, plan_code="pro")
    assert billing.usage_record(organisation=org, meter="predictions").pk


def test_plan_changes_validate(make_org, make_member):
    org, _ = make_org()
    with pytest.raises(InvalidInput, match="Unknown plan"):
        billing.subscription_change_plan(organisation=org, plan_code="platinum")
    with pytest.raises(InvalidInput, match="already on"):
        billing.subscription_change_plan(organisation=org, plan_code="trial")
    billing.subscription_change_plan(organisation=org, plan_code="enterprise")
    with pytest.raises(InvalidInput, match="cannot be restarted"):
        billing.subscription_change_plan(organisation=org, plan_code="trial")
    for _ in range(20):
        make_member(org)
    with pytest.raises(InvalidInput, match="seats"):
        billing.subscription_change_plan(organisation=org, plan_code="pro")
    assert billing.subscription_for(organisation=org).plan.code == "enterprise"


def test_usage_summary_counts_flow_and_stock(make_org, make_member):
    org, _ = make_org()
    make_member(org)
    billing.usage_record(organisation=org, meter="predictions", quantity=7)
    meters = {m.meter: m for m in usage_summary(organisation=org).meters}
    assert meters["predictions"].used == 7 and meters["seats"].used == 2
    assert meters["predictions"].limit == Plan.objects.get(code="trial").predictions_per_month


def _ledger_total(org, meter="predictions"):
    return billing.flow_used(organisation=org, meter=meter, since=billing.period_bounds()[0])


def _race(count, fn):
    """Run ``fn`` in ``count`` threads (own database connections) released together; their outcomes."""
    import threading

    from django.db import connections

    outcomes, barrier = [], threading.Barrier(count)

    def run():
        try:
            barrier.wait()
            fn()
            outcomes.append("ok")
        except QuotaExceeded:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


@pytest.mark.django_db(transaction=True)
def test_concurrent_first_events_of_a_period_all_count(make_org):
    """The period's counter row does not exist yet: racing callers create it once and every event counts."""
    org, _ = make_org()
    outcomes = _race(
        8, lambda: billing.usage_record(organisation=org, meter="api_calls", quantity=1, enforce=False)
    )
    assert outcomes == ["ok"] * 8
    assert billing.period_used(organisation=org, meter="api_calls") == 8
    outcomes = _race(8, lambda: billing.usage_record(organisation=org, meter="predictions", quantity=1))
    assert outcomes == ["ok"] * 8
    assert billing.period_used(organisation=org, meter="predictions") == _ledger_total(org) == 8


@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_cannot_take_the_last_units_twice(make_org):
    """Eight threads (eight database connections) race for the last three predictions of the month."""
    org, _ = make_org()
    limit = Plan.objects.get(code="trial").predictions_per_month
    billing.usage_record(organisation=org, meter="predictions", quantity=limit - 3)
    outcomes = _race(8, lambda: billing.usage_record(organisation=org, meter="predictions", quantity=1))
    assert outcomes == ["ok"] * 3 + ["refused"] * 5
    assert _ledger_total(org) == limit
    assert billing.period_used(organisation=org, meter="predictions") == limit


def test_period_counter_follows_the_ledger(make_org):
    org, _ = make_org()
    billing.usage_record(organisation=org, meter="predictions", quantity=7, idempotency_key="a")
    billing.usage_record(organisation=org, meter="predictions", quantity=7, idempotency_key="a")  # retry
    billing.usage_record(organisation=org, meter="predictions", quantity=2.5, enforce=False)
    billing.usage_record(organisation=org, meter="predictions", quantity=-1)  # a correction line
    billing.usage_record(organisation=org, meter="api_calls", quantity=1, enforce=False)
    assert billing.period_used(organisation=org, meter="predictions") == _ledger_total(org) == 8.5
    assert billing.period_used(organisation=org, meter="api_calls") == 1
    assert billing.period_used(organisation=org, meter="predictions", period="1999-01") == 0


def test_counter_backfill_rebuilds_totals_from_the_ledger(make_org):
    import importlib

    from django.apps import apps

    from core.billing.models import UsageCounter

    org, _ = make_org()
    billing.usage_record(organisation=org, meter="predictions", quantity=4)
    billing.usage_record(organisation=org, meter="training_jobs", quantity=1)
    UsageCounter.all_tenants.filter(organisation=org).delete()
    importlib.import_module("core.billing.migrations.0005_usage_counter").backfill(apps, None)
    period = billing.period_bounds()[2]
    assert {(c.meter, c.period, c.used) for c in UsageCounter.objects.for_org(org)} == {
        ("predictions", period, 4),
        ("training_jobs", period, 1),
    }


def test_the_current_period_is_kept_while_the_clock_is_in_it_and_moves_with_the_month(monkeypatch):
    from datetime import UTC, datetime

    clock = [datetime(2031, 1, 31, 23, 59, 59, tzinfo=UTC)]
    monkeypatch.setattr(timezone, "now", lambda: clock[0])
    monkeypatch.setattr(billing, "_last_period", None)
    first = billing.period_bounds()
    assert first[2] == "2031-01" and billing.period_bounds() is first  # kept, not made again
    clock[0] = datetime(2031, 2, 1, 0, 0, 0, tzinfo=UTC)
    assert billing.period_bounds()[2] == "2031-02"
    assert billing.period_bounds()[:2] == (clock[0], datetime(2031, 3, 1, tzinfo=UTC))
    assert billing.period_bounds(datetime(2030, 12, 5, tzinfo=UTC))[2] == "2030-12"  # a given time: its own
    assert billing.period_bounds()[2] == "2031-02"
