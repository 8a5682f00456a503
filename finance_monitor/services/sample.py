"""The monitor's "Try it with sample data": a modest replay of the shipped texts (``services.replay``) into a
source of its own, whose first tick runs at once (a day of past documents, and the default models' training
when the organisation has none; beat's ticks push the rest), and, where the person may manage the monitor and
the organisation has no alert rule yet, the rule the demo has, so that the sample's planted negative surge
raises an alert with its evidence, as the demo's does."""

from dataclasses import dataclass

from django.db import transaction

from finance_monitor.models import AlertRule, Replay
from finance_monitor.services import alerts, replay

SOURCE = "Sample: twitter financial news"  # the source of the page's sample replay
RULE = "Negative surge (all documents)"  # the rule the sample and the demo add
# 120 documents of the past day at once, 2 a minute for 10 minutes, then a planted surge of 30 negative ones
# (170 in all, metered as documents_ingested like any other)
PLAN = replay.ReplayPlan(
    baseline_hours=24,
    baseline_per_hour=5,
    live_per_minute=2,
    live_minutes=10,
    surge_after_s=120,
    surge_size=30,
)


@dataclass(frozen=True)
class SampleLoaded:
    backfilled: int  # documents of the past day, stored now
    rule: AlertRule | None  # the rule added with the sample (None: the organisation had rules, or may not)


def default_rule_save(*, organisation) -> AlertRule:
    """The rule on every document's negative share and volume, hour by hour against the past day."""
    return alerts.alert_rule_save(
        organisation=organisation, name=RULE, granularity="hour", baseline_buckets=24, min_volume=30
    )


def sample_loaded(*, organisation) -> bool:
    return Replay.objects.for_org(organisation).filter(source__name=SOURCE).exists()


def sample_load(*, organisation, with_rule: bool) -> SampleLoaded:
    """Start the sample replay and run its first tick, in one transaction (over the plan's documents, for
    one, nothing is stored: the ``TrellisError`` is the caller's to say); ``with_rule``: add :data:`RULE`
    when the organisation has no alert rule."""
    with transaction.atomic():
        run = replay.replay_start(organisation=organisation, plan=PLAN, source_name=SOURCE)
        done = replay.replay_tick(replay=run)
        rule = None
        if with_rule and not AlertRule.objects.for_org(organisation).exists():
            rule = default_rule_save(organisation=organisation)
    return SampleLoaded(backfilled=done["baseline"], rule=rule)
