"""The finance monitor as a product of the platform (``core.products``), declared once.

Meters (documents ingested, documents classified) are wired after open metering lands (issue 9, item 4).
"""

from core.products import BeatEntry, DashboardCard, NavEntry, Product, ProductPermission
from core.tenancy.models import Role
from finance_monitor.services.trends import trend_buckets_remap

PRODUCT = Product(
    name="finance_monitor",
    display_name="Finance monitor",
    url_prefix="finance-monitor",
    urls="finance_monitor.urls",
    api_urls="finance_monitor.api_urls",
    websocket_routes="finance_monitor.routing",
    nav=(NavEntry("Finance monitor", "finance_monitor:index"),),
    cards=(
        DashboardCard(
            "Finance monitor", "Topic and sentiment monitoring with alerts.", "finance_monitor:index"
        ),
    ),
    permissions=(
        # pushing and uploading documents: people who operate the monitor, machines with the train scope
        ProductPermission(
            "monitor.ingest", roles=frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR}), scope="train"
        ),
        # sources, watch-lists, alert rules and their webhooks
        ProductPermission("monitor.manage", roles=frozenset({Role.OWNER, Role.ADMIN}), scope="admin"),
    ),
    role_duties={Role.OPERATOR: "the finance monitor's document intake"},
    beat=(
        BeatEntry("finance-monitor-poll-feeds", task="finance_monitor.poll_feeds", schedule=60.0),
        # every rule tests its latest complete bucket and the one filling (alerts.alert_rule_evaluate)
        BeatEntry("finance-monitor-evaluate-alerts", task="finance_monitor.evaluate_alerts", schedule=300.0),
    ),
    # Parents before children: export writes them in this order, import re-creates them in it, deletion
    # removes them in reverse (core.privacy).
    owned_models=(
        "finance_monitor.Source",
        "finance_monitor.FeedPoll",
        "finance_monitor.Document",
        "finance_monitor.Entity",
        "finance_monitor.Mention",
        "finance_monitor.TrendBucket",
        "finance_monitor.AlertRule",
        "finance_monitor.Alert",
        "finance_monitor.AlertEvidence",
        "finance_monitor.Delivery",
    ),
    import_remap=trend_buckets_remap,  # per-entity buckets and alerts name their entity by id
)
