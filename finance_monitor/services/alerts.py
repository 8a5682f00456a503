"""Alert rules and their evaluation: the only writers of ``AlertRule`` and ``Alert``.

A rule watches the trend buckets of one target (everything, a topic, or a watch-list entry) at hour or day
granularity. ``alert_rule_evaluate`` runs the tests of ``finance_monitor.surge`` (the statistics, pure) on
every complete bucket since the rule's last evaluation, then on the bucket still filling (which may raise an
alert early but never ends a surge), under a lock on the rule row. What fires becomes an ``Alert`` with its
evidence (the target's negative documents of the surge's window, or all of them for a volume surge); the
unique (rule, bucket, kind) constraint makes a second evaluation of the same bucket a no-op. Delivery (live
in-app, e-mail, webhook) starts after commit (``services.alert_delivery``).
"""

from datetime import datetime, timedelta

from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone

from core.errors import InvalidInput
from core.outbound import outbound_url_check
from finance_monitor import surge
from finance_monitor.models import (
    Alert,
    AlertEvidence,
    AlertKind,
    AlertRule,
    AlertTarget,
    Document,
    Entity,
    Granularity,
    Sentiment,
    TrendBucket,
)
from finance_monitor.services.caps import cap_check
from finance_monitor.services.classification import topic_check
from finance_monitor.services.trends import bucket_start

EVIDENCE_CAP = 200  # documents linked to one alert; ``evidence_count`` says how many there were
MAX_CATCH_UP = 48  # complete buckets evaluated in one run after a pause of the schedule
MAX_RECIPIENTS = 20
MAX_RULES = 200  # per organisation: beat evaluates every enabled rule (services.caps)
WIDTH: dict[str, timedelta] = {Granularity.HOUR: timedelta(hours=1), Granularity.DAY: timedelta(days=1)}
RULE_FIELDS = (
    "name",
    "target",
    "topic",
    "entity_id",
    "granularity",
    "baseline_buckets",
    "min_volume",
    "significance",
    "test_share",
    "test_volume",
    "cooldown_s",
    "enabled",
    "email_recipients",
    "webhook_url",
)


# --- rules --------------------------------------------------------------------------------------------


def _check_rule(*, organisation, rule: AlertRule, topic_given: bool = True) -> None:
    if rule.target == AlertTarget.TOPIC and not rule.topic:
        raise InvalidInput("A topic rule needs its topic.", details={"field": "topic"})
    if rule.target == AlertTarget.TOPIC and topic_given:  # a rule on another topic could never fire
        topic_check(organisation=organisation, topic=rule.topic)
    if rule.target == AlertTarget.ENTITY:
        if rule.entity_id is None:
            raise InvalidInput("A watch-list rule needs its entry.", details={"field": "entity"})
        if not Entity.objects.for_org(organisation).filter(pk=rule.entity_id).exists():
            raise InvalidInput("No such watch-list entry.", details={"field": "entity"})
    if rule.target != AlertTarget.TOPIC:
        rule.topic = ""
    if rule.target != AlertTarget.ENTITY:
        rule.entity = None
    if not (rule.test_share or rule.test_volume):
        raise InvalidInput(
            "A rule tests the negative share, the volume, or both.", details={"field": "test_share"}
        )
    if not 0 < rule.significance < 0.5:
        raise InvalidInput("significance must be above 0 and below 0.5.", details={"field": "significance"})
    if rule.webhook_url and not rule.webhook_url.lower().startswith(("http://", "https://")):
        raise InvalidInput("A webhook url must be http or https.", details={"field": "webhook_url"})
    if rule.webhook_url:
        outbound_url_check(rule.webhook_url, what="webhook url", field="webhook_url")
    recipients = list(dict.fromkeys(r.strip() for r in rule.email_recipients if r.strip()))
    if len(recipients) > MAX_RECIPIENTS:
        raise InvalidInput(
            f"At most {MAX_RECIPIENTS} e-mail recipients.", details={"field": "email_recipients"}
        )
    for address in recipients:
        try:
            validate_email(address)
        except Exception as exc:  # noqa: BLE001 - Django's ValidationError, said in our words
            raise InvalidInput(
                f"Not an e-mail address: {address!r}.", details={"field": "email_recipients"}
            ) from exc
    rule.email_recipients = recipients


def alert_rule_save(*, organisation, rule: AlertRule | None = None, **fields) -> AlertRule:
    """Create a rule, or change the given one (only the fields passed). A webhook gets a secret once."""
    unknown = set(fields) - set(RULE_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown rule fields: {sorted(unknown)}.")
    rule = rule or AlertRule(organisation=organisation)
    for name, value in fields.items():
        setattr(rule, name, value)
    _check_rule(organisation=organisation, rule=rule, topic_given=rule.pk is None or "topic" in fields)
    if AlertRule.objects.for_org(organisation).filter(name=rule.name).exclude(pk=rule.pk).exists():
        raise InvalidInput("A rule with this name exists.", details={"field": "name"})
    if rule.webhook_url and not rule.webhook_secret:
        rule.webhook_secret = _new_secret()
    if rule.pk and ({"target", "topic", "entity_id", "granularity"} & set(fields)):
        rule.state, rule.evaluated_until = {}, None  # another series: start afresh
    with transaction.atomic():
        if rule.pk is None:
            rules = AlertRule.objects.for_org(organisation)
            cap_check(organisation=organisation, rows=rules, limit=MAX_RULES, what="alert rules")
        rule.save()
    return rule


def alert_rule_delete(*, rule: AlertRule) -> int:
    """Delete the rule with its alerts and their deliveries (cascade); how many alerts went with it."""
    alerts = rule.alerts.count()
    rule.delete()
    return alerts


def _new_secret() -> str:
    import secrets

    return "whsec_" + secrets.token_hex(24)


def alert_rule_rotate_secret(*, rule: AlertRule) -> AlertRule:
    rule.webhook_secret = _new_secret()
    rule.save(update_fields=["webhook_secret", "updated_at"])
    return rule


# --- evaluation ---------------------------------------------------------------------------------------


def rule_series(rule: AlertRule) -> tuple[str, str]:
    """(dimension, key) of the trend buckets the rule tests."""
    if rule.target == AlertTarget.TOPIC:
        return "topic", rule.topic
    if rule.target == AlertTarget.ENTITY:
        return "entity", str(rule.entity_id)
    return "all", ""


# The volume test's cycle per bucket size (finance_monitor.surge): the trading day for hours, the week for
# days.
SEASON: dict[str, int] = {Granularity.HOUR: 24, Granularity.DAY: 7}


def rule_config(rule: AlertRule) -> surge.SurgeConfig:
    return surge.SurgeConfig(
        baseline_buckets=rule.baseline_buckets,
        significance=rule.significance,
        min_volume=rule.min_volume,
        test_share=rule.test_share,
        test_volume=rule.test_volume,
        season=SEASON[rule.granularity],
    )


def _episodes(rule: AlertRule) -> dict[str, surge.Episode]:
    out = {}
    for kind in surge.KINDS:
        saved = rule.state.get(kind) or {}
        fired = saved.get("last_fired")
        out[kind] = surge.Episode(
            open=bool(saved.get("open")), last_fired=datetime.fromisoformat(fired) if fired else None
        )
    return out


def _history(rule: AlertRule, first: datetime, last: datetime) -> dict[datetime, surge.Counts]:
    dimension, key = rule_series(rule)
    width = WIDTH[rule.granularity]
    since = first - width * (rule_config(rule).history_buckets - 1)
    rows = (
        TrendBucket.objects.for_org(rule.organisation_id)
        .filter(dimension=dimension, key=key, granularity=rule.granularity)
        .filter(bucket_start__gte=since, bucket_start__lte=last)
        .values_list("bucket_start", "volume", "negative")
    )
    return {start: surge.Counts(volume, negative) for start, volume, negative in rows}


def alert_rule_evaluate(*, rule: AlertRule, now: datetime | None = None) -> list[Alert]:
    """Evaluate the rule up to ``now``; the alerts this run raised (none if they were raised before)."""
    now = now or timezone.now()
    width = WIDTH[rule.granularity]
    current = bucket_start(now, rule.granularity)
    last_complete = current - width
    with transaction.atomic():
        rule = AlertRule.objects.for_org(rule.organisation_id).select_for_update().get(pk=rule.pk)
        first = last_complete
        if rule.evaluated_until is not None:
            first = max(rule.evaluated_until + width, last_complete - width * (MAX_CATCH_UP - 1))
        counts = _history(rule, first, current)
        config, episodes = rule_config(rule), _episodes(rule)
        cooldown = timedelta(seconds=rule.cooldown_s)
        raised = []
        evaluate = [(first + width * i, True) for i in range((last_complete - first) // width + 1)]
        evaluate.append((current, False))
        for start, complete in evaluate:
            history = [
                counts.get(start - width * i, surge.Counts(0, 0))
                for i in range(config.history_buckets - 1, -1, -1)
            ]
            findings = {f.kind: f for f in surge.detect(history, config)}
            for kind in surge.KINDS:
                finding = findings.get(kind)
                significant = finding is not None and finding.significant
                fire, episodes[kind] = surge.episode_step(
                    episodes[kind],
                    significant=significant,
                    bucket_start=start,
                    cooldown=cooldown,
                    complete=complete,
                )
                if fire and (alert := _alert_create(rule=rule, start=start, finding=finding, now=now)):
                    raised.append(alert)
        rule.state = {
            kind: {"open": e.open, "last_fired": e.last_fired.isoformat() if e.last_fired else None}
            for kind, e in episodes.items()
        }
        rule.evaluated_until = max(last_complete, rule.evaluated_until or last_complete)
        rule.save(update_fields=["state", "evaluated_until", "updated_at"])
        if raised:
            from finance_monitor.services.alert_delivery import alerts_deliver

            alerts_deliver(alerts=raised)
    return raised


def _alert_create(
    *, rule: AlertRule, start: datetime, finding: surge.Finding | None, now: datetime
) -> Alert | None:
    assert finding is not None  # only a significant finding fires
    dimension, key = rule_series(rule)
    alert, created = Alert.all_tenants.get_or_create(
        rule=rule,
        bucket_start=start,
        kind=finding.kind,
        defaults={
            "organisation_id": rule.organisation_id,
            "dimension": dimension,
            "key": key,
            "granularity": rule.granularity,
            "window": finding.window,
            "fired_at": now,
            "volume": finding.volume,
            "negative": finding.negative,
            "observed": finding.observed,
            "baseline": finding.baseline,
            "baseline_volume": finding.baseline_volume,
            "p_value": finding.p_value,
        },
    )
    if not created:
        return None
    evidence = alert_evidence_query(alert=alert)
    alert.evidence_count = evidence.count()
    alert.save(update_fields=["evidence_count", "updated_at"])
    AlertEvidence.all_tenants.bulk_create(
        [
            AlertEvidence(organisation_id=rule.organisation_id, alert=alert, document_id=document_id)
            for document_id in evidence.values_list("pk", flat=True)[:EVIDENCE_CAP]
        ]
    )
    return alert


def alert_evidence_query(*, alert: Alert):
    """The documents behind an alert: the target's documents in the tested window, negative ones for a
    share surge; most negative first."""
    width = WIDTH[alert.granularity]
    since = alert.bucket_start - width * (alert.window - 1)
    docs = Document.objects.for_org(alert.organisation_id).filter(
        occurred_at__gte=since, occurred_at__lt=alert.bucket_start + width, classified_at__isnull=False
    )
    if alert.dimension == "topic":
        docs = docs.filter(topic=alert.key)
    elif alert.dimension == "entity":
        docs = docs.filter(mentions__entity_id=int(alert.key))
    if alert.kind == AlertKind.SHARE:
        docs = docs.filter(sentiment=Sentiment.NEGATIVE)
    return docs.order_by("score", "-occurred_at", "id")


def alert_rules_enabled() -> list[int]:
    """Beat: the ids of every enabled rule of every organisation (each is evaluated by its own task)."""
    rules = AlertRule.all_tenants.filter(enabled=True, organisation__deleted_at__isnull=True)
    return list(rules.order_by("pk").values_list("pk", flat=True))
