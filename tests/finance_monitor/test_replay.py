"""The demo's monitor: the seeder's watch-list, rule and replay, and the replay itself (a baseline of past
hours, a live stream, a planted surge of real negative texts) pushed through the ingest path and raising an
alert whose evidence is the surge's texts. The documents are classified here with the shipped set's own
labels (an oracle standing in for the default models, whose training and classification
``test_classification`` covers), so the test is about the timeline, not about a model's accuracy."""

import csv
import gzip
from dataclasses import asdict
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from finance_monitor import demo
from finance_monitor.models import Alert, AlertRule, Document, Entity, Replay
from finance_monitor.services import alerts, classification, defaults, replay
from finance_monitor.services.trends import document_classified


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, line: str) -> None:
        self.lines.append(line)

    error = info


@pytest.mark.django_db
def test_the_demo_replay_raises_an_alert_with_the_planted_surge_as_evidence(make_org, settings):
    organisation, _ = make_org()
    settings.FM_DEFAULT_MODELS_ON_FIRST_USE = False
    with gzip.open(defaults.DATA / defaults.FILES["sentiment"], "rt", encoding="utf-8", newline="") as f:
        labels = {row["text"].strip(): row["label"] for row in csv.DictReader(f)}
    log = Log()
    assert "timed replay of twitter financial news" in demo.seed(organisation, log)
    assert demo.seed(organisation, log) == ""  # idempotent
    assert Entity.objects.for_org(organisation).count() == len(demo.WATCHLIST)
    rule = AlertRule.objects.for_org(organisation).get(name=demo.RULE)
    run = Replay.objects.for_org(organisation).select_related("organisation", "source").get()
    plan = replay.ReplayPlan(baseline_per_hour=8, live_per_minute=6, live_minutes=2, surge_size=40)
    run.plan = asdict(plan)
    run.save()
    start = timezone.now()

    def tick(seconds: float) -> dict:
        run.refresh_from_db()
        done = replay.replay_tick(replay=run, now=start + timedelta(seconds=seconds))
        for document in classification.pending_documents(organisation=organisation):
            label = labels[document.text]
            document_classified(
                organisation=organisation,
                document_id=document.pk,
                topic="markets",
                probabilities={s: float(s == label) for s in ("positive", "neutral", "negative")},
            )
        return done

    assert tick(0) == {"baseline": 192, "live": 0, "surge": 0, "evaluate": False}
    assert tick(0) == {"baseline": 0, "live": 0, "surge": 0, "evaluate": False}  # nothing twice
    assert alerts.alert_rule_evaluate(rule=rule, now=start) == []  # a flat day: quiet
    assert tick(65)["live"] == 6
    assert tick(120) == {"baseline": 0, "live": 6, "surge": 40, "evaluate": False}
    assert tick(125)["evaluate"] is True  # all classified: the rules are evaluated now
    run.refresh_from_db()
    assert run.finished_at is not None and run.live_pushed == 12
    assert Document.objects.for_org(organisation).filter(source=run.source).count() == 192 + 12 + 40
    [alert] = alerts.alert_rule_evaluate(rule=rule, now=start + timedelta(seconds=125))
    assert alert.kind == "share" and alert.p_value < rule.significance
    _calm, negatives = replay._texts(plan.seed)
    evidence = [d.text for d in Alert.objects.for_org(organisation).get(pk=alert.pk).evidence.all()]
    planted = set(negatives[: plan.surge_size])
    # the surge's texts, beside the few negative ones of the stream that share its hour
    assert planted <= set(evidence) and sum(t in planted for t in evidence) >= 0.8 * len(evidence)
    assert replay.replays_tick() == 0  # finished: beat leaves it alone


@pytest.mark.django_db
def test_monitor_replay_command_checks_its_plan(make_org):
    organisation, _ = make_org()
    with pytest.raises(CommandError, match="No organisation"):
        call_command("monitor_replay", "--org", "nobody")
    with pytest.raises(CommandError, match="this plan needs"):
        call_command("monitor_replay", "--org", organisation.slug, "--surge-size", "5000")
    call_command("monitor_replay", "--org", organisation.slug, "--surge-after-s", "30")
    assert Replay.objects.for_org(organisation).get().plan["surge_after_s"] == 30
