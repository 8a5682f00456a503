"""The demo organisation's monitor (``seed_demo``): a watch-list, an alert rule on negative surges, and a
timed replay of the shipped twitter financial news texts (MIT, ``data/twitter_financial_news``) with a
planted negative surge (``services.replay``). Everything heavy happens in the worker: the replay's first
beat tick pushes the baseline and queues the default models' training, classification runs on the ``infer``
queue, and the surge's alert fires a few minutes after ``make run`` starts."""

from core.products import DemoLog
from finance_monitor.models import AlertRule, Entity, EntityKind, Replay
from finance_monitor.services import entities, replay
from finance_monitor.services.sample import RULE, default_rule_save

WATCHLIST = (
    (EntityKind.COMPANY, "Apple", "AAPL", ["iPhone"]),
    (EntityKind.COMPANY, "Tesla", "TSLA", ["Elon Musk"]),
    (EntityKind.COMPANY, "Microsoft", "MSFT", []),
    (EntityKind.COMPANY, "Amazon", "AMZN", []),
    (EntityKind.KEYWORD, "interest rate", "", ["rate hike", "rate cut"]),
)


def seed(organisation, log: DemoLog) -> str:
    """Idempotent: an organisation that already has a replay is left as it is."""
    if Replay.objects.for_org(organisation).exists():
        return ""
    for kind, name, ticker, aliases in WATCHLIST:
        if not Entity.objects.for_org(organisation).filter(name=name).exists():
            entities.entity_save(
                organisation=organisation, kind=kind, name=name, ticker=ticker, aliases=aliases
            )
    if not AlertRule.objects.for_org(organisation).filter(name=RULE).exists():
        default_rule_save(organisation=organisation)
    started = replay.replay_start(organisation=organisation)
    plan = replay.ReplayPlan(**started.plan)
    log.info(
        f"  monitor replay: {plan.baseline_hours} h of baseline, {plan.live_per_minute} documents a minute,"
        f" {plan.surge_size} negative ones at +{plan.surge_after_s} s (the worker trains the default models)"
    )
    return (
        f"a watch-list of {len(WATCHLIST)} entries, the rule '{RULE}'"
        " and a timed replay of twitter financial news"
    )
