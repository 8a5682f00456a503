"""Alert evaluation on planted streams: a surge fires with its evidence, a flat stream stays quiet, one alert
per surge (cool-down), idempotent evaluation, early alerts on the filling bucket, per-target evidence."""

from datetime import UTC, datetime, timedelta

import pytest

from finance_monitor import tasks
from finance_monitor.models import Alert, AlertEvidence, Document
from finance_monitor.services import alerts, entities
from tests.finance_monitor.planting import plant, plant_baseline

H = datetime(2026, 11, 30, 12, tzinfo=UTC)  # the surge's hour
HOUR = timedelta(hours=1)
AFTER = H + HOUR + timedelta(minutes=5)  # H is complete, the next bucket has just begun


def topic_rule(organisation, **kw):
    fields = dict(
        name=kw.pop("name", "macro surge"),
        target="topic",
        topic="macro",
        baseline_buckets=8,
        min_volume=10,
        significance=0.01,
    )
    return alerts.alert_rule_save(organisation=organisation, **{**fields, **kw})


def evidence_ids(alert) -> set[int]:
    return set(
        AlertEvidence.objects.for_org(alert.organisation_id)
        .filter(alert=alert)
        .values_list("document_id", flat=True)
    )


@pytest.mark.django_db
def test_a_planted_surge_fires_with_its_negative_documents_as_evidence(
    make_org, django_capture_on_commit_callbacks
):
    organisation, _ = make_org()
    plant_baseline(organisation, H)
    surge = plant(organisation, H, 20, 16)
    plant(organisation, H, 5, 5, topic="earnings")  # negative too, but not the rule's topic
    rule = topic_rule(organisation)
    with django_capture_on_commit_callbacks() as callbacks:
        raised = alerts.alert_rule_evaluate(rule=rule, now=AFTER)
    assert len(raised) == 1 and len(callbacks) == 1  # the live broadcast; no e-mail or webhook configured
    alert = raised[0]
    assert (alert.kind, alert.bucket_start, alert.window) == ("share", H, 1)
    assert (alert.volume, alert.negative, alert.evidence_count) == (20, 16, 16)
    assert alert.baseline == pytest.approx(0.3) and alert.observed == pytest.approx(0.8)
    assert alert.p_value < 0.01 and (alert.dimension, alert.key) == ("topic", "macro")
    assert evidence_ids(alert) == set(surge[:16])
    assert all(
        d.sentiment == "negative" and d.topic == "macro"
        for d in Document.objects.for_org(organisation).filter(pk__in=surge[:16])
    )


@pytest.mark.django_db
def test_a_flat_stream_stays_quiet(make_org):
    organisation, _ = make_org()
    plant_baseline(organisation, H)
    plant(organisation, H, 12, 5)  # 42% negative of a usual volume: within the noise
    rule = topic_rule(organisation, test_volume=True)
    assert alerts.alert_rule_evaluate(rule=rule, now=AFTER) == []
    rule.refresh_from_db()
    assert rule.evaluated_until == H and rule.state["share"]["open"] is False


@pytest.mark.django_db
def test_evaluating_the_same_bucket_twice_fires_once(make_org):
    organisation, _ = make_org()
    plant_baseline(organisation, H)
    plant(organisation, H, 20, 16)
    rule = topic_rule(organisation)
    assert len(alerts.alert_rule_evaluate(rule=rule, now=AFTER)) == 1
    assert alerts.alert_rule_evaluate(rule=rule, now=AFTER) == []
    # even a rule that lost its state (another process, a restore) cannot raise it twice: (rule, bucket, kind)
    rule.refresh_from_db()
    rule.state, rule.evaluated_until = {}, None
    rule.save()
    assert alerts.alert_rule_evaluate(rule=rule, now=AFTER) == []
    assert Alert.objects.for_org(organisation).count() == 1


@pytest.mark.django_db
def test_one_alert_per_surge_then_a_cooldown(make_org):
    organisation, _ = make_org()
    plant_baseline(organisation, H)
    short = topic_rule(organisation, name="short", cooldown_s=5 * 3600)
    long = topic_rule(organisation, name="long", cooldown_s=6 * 3600)
    # hour by hour: a surge, it goes on, back to flat (the 3-bucket window still holds the surge for two more
    # hours, so the surge is over at H+4), then a new surge 5 hours after the first
    stream = [(20, 17), (20, 17), (10, 3), (10, 3), (10, 3), (20, 19)]
    for offset, (volume, negative) in enumerate(stream):
        hour = H + offset * HOUR
        plant(organisation, hour, volume, negative)
        for rule in (short, long):
            alerts.alert_rule_evaluate(rule=rule, now=hour + HOUR + timedelta(minutes=1))
    fired = {
        r.name: [
            a.bucket_start
            for a in Alert.objects.for_org(organisation).filter(rule=r).order_by("bucket_start")
        ]
        for r in (short, long)
    }
    assert fired == {"short": [H, H + 5 * HOUR], "long": [H]}
    long.refresh_from_db()
    assert long.state["share"]["open"] is True  # the second surge joined the silenced episode


@pytest.mark.django_db
def test_the_filling_bucket_alerts_early_and_once(make_org):
    organisation, _ = make_org()
    plant_baseline(organisation, H)
    plant(organisation, H, 20, 16)
    rule = topic_rule(organisation)
    early = alerts.alert_rule_evaluate(rule=rule, now=H + timedelta(minutes=59, seconds=59))
    assert [a.bucket_start for a in early] == [H]
    assert alerts.alert_rule_evaluate(rule=rule, now=AFTER) == []  # the same bucket, complete
    assert Alert.objects.for_org(organisation).count() == 1


@pytest.mark.django_db
def test_watch_list_and_volume_rules_and_the_beat_task(make_org):
    organisation, _ = make_org()
    entry = entities.entity_save(organisation=organisation, kind="company", name="Allstate", ticker="ALL")
    plant_baseline(organisation, H, words="Allstate")
    plant_baseline(organisation, H, words="Rates")
    named = plant(organisation, H, 40, 12, words="Allstate")  # volume x4, share flat
    plant(organisation, H, 10, 3, words="Rates")
    rule = alerts.alert_rule_save(
        organisation=organisation,
        name="Allstate volume",
        target="entity",
        entity_id=entry.pk,
        baseline_buckets=8,
        min_volume=10,
        test_share=True,
        test_volume=True,
    )
    disabled = topic_rule(organisation, name="off", enabled=False)
    other_org, _ = make_org()
    assert alerts.alert_rules_enabled() == [rule.pk]
    assert disabled.pk not in alerts.alert_rules_enabled()
    raised = alerts.alert_rule_evaluate(rule=rule, now=AFTER)
    assert [(a.kind, a.dimension, a.key) for a in raised] == [("volume", "entity", str(entry.pk))]
    assert evidence_ids(raised[0]) == set(named)  # a volume surge's evidence: all the entry's documents
    assert raised[0].observed == 40 and raised[0].baseline == pytest.approx(10.0)
    assert tasks.evaluate_alert_rule(rule.pk) == 0  # the task body: evaluated already
    assert not Alert.objects.for_org(other_org).exists()


@pytest.mark.django_db
def test_bad_rules_are_refused_with_a_reason(make_org):
    from core.errors import InvalidInput

    organisation, _ = make_org()
    other, _ = make_org()
    foreign = entities.entity_save(organisation=other, kind="company", name="Acme", ticker="ACME")
    bad = [
        ({"target": "topic"}, "needs its topic"),
        ({"target": "entity", "entity_id": foreign.pk}, "No such watch-list entry"),
        ({"webhook_url": "ftp://example.com/hook"}, "http or https"),
        ({"test_share": False, "test_volume": False}, "negative share, the volume"),
        ({"email_recipients": ["not an address"]}, "Not an e-mail address"),
        ({"significance": 0.7}, "significance"),
    ]
    for fields, reason in bad:
        with pytest.raises(InvalidInput, match=reason):
            alerts.alert_rule_save(organisation=organisation, name="r", **fields)
    rule = alerts.alert_rule_save(organisation=organisation, name="r", webhook_url="https://example.com/hook")
    assert rule.webhook_secret.startswith("whsec_")
    with pytest.raises(InvalidInput, match="exists"):
        alerts.alert_rule_save(organisation=organisation, name="r")


@pytest.mark.django_db
def test_hour_rules_expect_the_hours_own_volume_and_day_rules_the_weekdays(make_org):
    from finance_monitor.surge import Counts, detect

    organisation, _ = make_org()
    hourly = alerts.rule_config(
        topic_rule(
            organisation,
            name="hourly",
            test_share=False,
            test_volume=True,
            baseline_buckets=168,
            significance=0.002,
        )
    )
    daily = alerts.rule_config(topic_rule(organisation, name="daily", granularity="day"))
    assert (hourly.season, daily.season) == (24, 7)
    # a week of hours, 100 an hour from 13:00 to 20:00 and 10 otherwise, evaluated at 14:00 at its usual 100
    history = [Counts(v, 0) for v in ([10] * 13 + [100] * 8 + [10] * 3) * 8][
        -hourly.history_buckets - 10 : -9
    ]
    assert history[-1].volume == 100 and history[-2].volume == 100
    assert not any(f.significant for f in detect(history, hourly))  # a busy hour is not a surge


@pytest.mark.django_db
def test_a_topic_rule_takes_a_topic_of_the_active_topic_model(make_org, client):
    """A rule on a topic the model never answers could never fire: refused with the topics, and the page
    offers them to pick from; before the organisation has a topic model any topic is taken, and a rule saved
    then keeps its topic when another of its fields changes."""
    from core.errors import InvalidInput
    from core.registry.models import ModelVersion, VersionStatus

    organisation, owner = make_org()
    before = topic_rule(organisation, topic="Bananas")  # no topic model yet
    ModelVersion.all_tenants.create(
        organisation=organisation,
        app="finance_monitor",
        task="topic",
        version=1,
        kind="classifier",
        status=VersionStatus.ACTIVE,
        labels=["Earnings", "Macro"],
        manifest={},
        artifact_path="",
    )
    with pytest.raises(InvalidInput) as refused:
        topic_rule(organisation, name="fruit", topic="Bananas")
    assert "'Bananas' is not a topic of the active topic model" in refused.value.message
    assert refused.value.details == {"field": "topic", "topics": ["Earnings", "Macro"]}
    assert topic_rule(organisation, name="macro", topic="Macro").topic == "Macro"
    assert alerts.alert_rule_save(organisation=organisation, rule=before, min_volume=20).topic == "Bananas"
    client.force_login(owner)
    page = client.get("/finance-monitor/alerts/").content.decode()
    assert '<select name="topic"' in page and '<option value="Macro">Macro</option>' in page
    refused_page = client.post(
        "/finance-monitor/alerts/rules/",
        {
            "name": "x",
            "target": "topic",
            "topic": "Bananas",
            "granularity": "hour",
            "baseline_buckets": 24,
            "min_volume": 10,
            "significance": 0.01,
            "test_share": "on",
        },
    )
    assert refused_page.status_code == 400 and "Select a valid choice" in refused_page.content.decode()
