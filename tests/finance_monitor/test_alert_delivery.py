"""Delivering alerts against real receivers on 127.0.0.1: signatures a receiver recomputes, retries with
backoff (500 then 200; a receiver that hangs), redirects not followed, capped answers, e-mail through the
locmem outbox, the live socket per organisation, and the whole path through a real Celery worker."""

import hashlib
import hmac
import io
import json
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from finance_monitor import tasks
from finance_monitor.models import AlertRule, Delivery
from finance_monitor.services import alert_delivery, alerts
from finance_monitor.services.trends import bucket_start
from tests.conftest import PASSWORD
from tests.finance_monitor.planting import plant, plant_baseline
from tests.finance_monitor.test_alerts import AFTER, H, topic_rule
from tests.sockets import Socket, run_sockets


def verify(request: dict, secret: str) -> dict:
    """What a receiver does: recompute the HMAC over "<t>.<body>" and check the timestamp is fresh."""
    parts = dict(item.split("=", 1) for item in request["headers"]["Trellis-Signature"].split(","))
    expected = hmac.new(
        secret.encode(), parts["t"].encode() + b"." + request["body"], hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(parts["v1"], expected)
    assert abs(time.time() - int(parts["t"])) < 60
    return json.loads(request["body"])


def surge_alert(organisation, **rule_fields):
    plant_baseline(organisation, H)
    surge = plant(organisation, H, 20, 16)
    rule = topic_rule(organisation, **rule_fields)
    [alert] = alerts.alert_rule_evaluate(rule=rule, now=AFTER)
    return rule, alert, surge


def deliveries(alert) -> list[Delivery]:
    return list(Delivery.objects.for_org(alert.organisation_id).filter(alert=alert).order_by("attempt"))


@pytest.mark.django_db
def test_webhooks_are_signed_as_stripe_signs(make_org, http_server):
    organisation, _ = make_org()
    http_server.routes["/hook"] = lambda request: (200, {}, b"thanks")
    rule, alert, surge = surge_alert(organisation, webhook_url=f"{http_server.url}/hook")
    test = alert_delivery.rule_webhook_test(rule=rule)
    assert (test.state, test.status_code, test.response_excerpt, test.alert) == (
        "delivered",
        200,
        "thanks",
        None,
    )
    assert verify(http_server.requests[-1], rule.webhook_secret)["type"] == "alert.test"
    assert tasks.deliver_alert.apply(args=[alert.pk, "webhook"]).get() == "delivered"
    sent = verify(http_server.requests[-1], rule.webhook_secret)
    assert sent["type"] == "alert.fired" and sent["data"]["id"] == alert.pk
    assert {d["id"] for d in sent["data"]["evidence"]} == set(surge[:16])
    # a receiver holding another secret, or a changed body, does not verify
    with pytest.raises(AssertionError):
        verify(http_server.requests[-1], "whsec_other")
    with pytest.raises(AssertionError):
        verify(
            {**http_server.requests[-1], "body": http_server.requests[-1]["body"] + b" "}, rule.webhook_secret
        )
    [delivered] = deliveries(alert)
    assert (delivered.channel, delivered.attempt, delivered.state) == ("webhook", 1, "delivered")


def _column(rule) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret FROM finance_monitor_alertrule WHERE id = %s", [rule.pk])
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_webhook_secrets_are_sealed_at_rest_and_still_sign(make_org, http_server, settings):
    settings.TRELLIS_ENCRYPT_AT_REST = False  # a rule made before encryption was on: clear in its column
    organisation, _ = make_org()
    http_server.routes["/hook"] = lambda request: (200, {}, b"thanks")
    before = topic_rule(organisation, name="before", webhook_url=f"{http_server.url}/hook")
    assert _column(before) == before.webhook_secret

    settings.TRELLIS_ENCRYPT_AT_REST, settings.TRELLIS_MASTER_KEY = True, Fernet.generate_key().decode()
    rule = topic_rule(organisation, webhook_url=f"{http_server.url}/hook")
    secret = AlertRule.objects.for_org(organisation).get(pk=rule.pk).webhook_secret
    assert secret.startswith("whsec_") and secret == rule.webhook_secret
    raw = _column(rule)
    assert raw.startswith("sealed:") and secret not in raw  # a copy of the database does not give it away
    assert alert_delivery.rule_webhook_test(rule=AlertRule.all_tenants.get(pk=rule.pk)).state == "delivered"
    assert verify(http_server.requests[-1], secret)["type"] == "alert.test"  # the receiver's secret verifies

    call_command("seal_secrets", stdout=io.StringIO())  # the rule from before is sealed too, same secret
    assert _column(before).startswith("sealed:")
    assert AlertRule.all_tenants.get(pk=before.pk).webhook_secret == before.webhook_secret

    settings.TRELLIS_MASTER_KEY = Fernet.generate_key().decode()  # not the key that sealed it: a clear error
    with pytest.raises(ImproperlyConfigured, match="does not open"):
        AlertRule.all_tenants.get(pk=rule.pk)


@pytest.mark.django_db
def test_a_failing_receiver_is_retried_with_backoff_until_it_answers(make_org, http_server):
    organisation, _ = make_org()
    answers = iter([(500, {}, b"oops"), (200, {}, b"ok")])
    http_server.routes["/hook"] = lambda request: next(answers)
    rule, alert, _ = surge_alert(organisation, webhook_url=f"{http_server.url}/hook")
    # the task for real (Celery runs its retries in this process: eager mode skips the countdown)
    assert tasks.deliver_alert.apply(args=[alert.pk, "webhook"]).get() == "delivered"
    first, second = deliveries(alert)
    assert (first.attempt, first.state, first.status_code, first.error) == (
        1,
        "retrying",
        500,
        "answered 500",
    )
    assert first.response_excerpt == "oops"
    wait = (first.next_retry_at - first.created_at).total_seconds()
    assert abs(wait - alert_delivery.retry_delay_s(1)) < 2
    assert (second.attempt, second.state, second.status_code, second.next_retry_at) == (
        2,
        "delivered",
        200,
        None,
    )
    bodies = [r["body"] for r in http_server.requests]
    assert len(bodies) == 2 and bodies[0] == bodies[1]
    assert [alert_delivery.retry_delay_s(n) for n in (1, 2, 3, 4)] == [30, 60, 120, 240]


@pytest.mark.django_db
def test_a_receiver_that_hangs_fails_for_good_after_the_last_attempt(make_org, http_server, monkeypatch):
    organisation, _ = make_org()

    def hang(handler):
        time.sleep(1.5)
        handler.send_response(200)
        handler.end_headers()

    http_server.routes["/hook"] = lambda request: hang
    monkeypatch.setattr(alert_delivery, "TIMEOUT_S", (1.0, 0.3))  # short, to keep the test quick
    rule, alert, _ = surge_alert(organisation, webhook_url=f"{http_server.url}/hook")
    assert tasks.deliver_alert.apply(args=[alert.pk, "webhook"]).get() == "failed"
    attempts = deliveries(alert)
    assert [d.attempt for d in attempts] == [1, 2, 3, 4, 5]
    assert [d.state for d in attempts] == ["retrying"] * 4 + ["failed"]
    assert all("timed out" in d.error and d.status_code is None for d in attempts)
    assert attempts[-1].next_retry_at is None and attempts[3].next_retry_at is not None


@pytest.mark.django_db
def test_redirects_are_not_followed_and_answers_are_capped(make_org, http_server):
    organisation, _ = make_org()
    http_server.routes["/moved"] = lambda request: (302, {"Location": f"{http_server.url}/elsewhere"}, b"")
    http_server.routes["/elsewhere"] = lambda request: (200, {}, b"should not be reached")
    http_server.routes["/big"] = lambda request: (200, {}, b"x" * 2_000_000)
    rule = alerts.alert_rule_save(
        organisation=organisation, name="hooks", webhook_url=f"{http_server.url}/moved"
    )
    moved = alert_delivery.rule_webhook_test(rule=rule)
    assert moved.state == "failed" and moved.status_code == 302 and "not followed" in moved.error
    assert [r["path"] for r in http_server.requests] == ["/moved"]
    rule = alerts.alert_rule_save(organisation=organisation, rule=rule, webhook_url=f"{http_server.url}/big")
    big = alert_delivery.rule_webhook_test(rule=rule)
    assert big.state == "delivered" and len(big.response_excerpt) == alert_delivery.EXCERPT_CHARS
    refused = alerts.alert_rule_save(organisation=organisation, rule=rule, webhook_url="http://127.0.0.1:9/")
    down = alert_delivery.rule_webhook_test(rule=refused)
    assert down.state == "failed" and "ConnectionError" in down.error


@pytest.mark.django_db
def test_alerts_are_mailed_with_their_evidence(make_org, mailoutbox, django_capture_on_commit_callbacks):
    organisation, _ = make_org()
    plant_baseline(organisation, H)
    surge = plant(organisation, H, 20, 16)
    rule = topic_rule(organisation, email_recipients=["risk@example.com", "desk@example.com"])
    with django_capture_on_commit_callbacks() as callbacks:
        [alert] = alerts.alert_rule_evaluate(rule=rule, now=AFTER)
    assert len(callbacks) == 2  # the live broadcast and the e-mail task (no webhook on this rule)
    assert tasks.deliver_alert.apply(args=[alert.pk, "email"]).get() == "delivered"
    [mail] = mailoutbox
    assert mail.to == ["risk@example.com", "desk@example.com"] and "macro surge" in mail.subject
    assert "80% negative of 20 documents; baseline 30%" in mail.body
    from finance_monitor.models import Document

    negative = set(
        Document.objects.for_org(organisation).filter(pk__in=surge[:16]).values_list("text", flat=True)
    )
    listed = [line[2:] for line in mail.body.splitlines() if line.startswith("- ")]
    assert "Evidence (16 documents" in mail.body and len(listed) == 10 and set(listed) <= negative
    [logged] = deliveries(alert)
    assert (logged.channel, logged.state, logged.target) == (
        "email",
        "delivered",
        "risk@example.com, desk@example.com",
    )


def _headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://localhost"),
    ]


@pytest.mark.django_db(transaction=True)
def test_the_alert_arrives_live_on_its_organisations_socket_only(make_org):
    from core.asgi import application

    organisation, owner = make_org()
    other, other_owner = make_org()
    plant_baseline(organisation, H)
    plant(organisation, H, 20, 16)
    rule = topic_rule(organisation)

    async def scenario():
        mine = Socket(
            application, "/ws/finance-monitor/alerts/", headers=await sync_to_async(_headers)(owner)
        )
        theirs = Socket(
            application, "/ws/finance-monitor/alerts/", headers=await sync_to_async(_headers)(other_owner)
        )
        assert (await mine.connect())[0] and (await theirs.connect())[0]
        [alert] = await sync_to_async(alerts.alert_rule_evaluate)(rule=rule, now=AFTER)
        event = await mine.receive_json_from(timeout=5)
        assert event["type"] == "fm.alert" and event["data"]["id"] == alert.pk
        assert event["data"]["kind"] == "share" and event["data"]["evidence_count"] == 16
        assert await theirs.receive_nothing(timeout=0.5)
        await mine.disconnect()
        await theirs.disconnect()
        anonymous = Socket(
            application, "/ws/finance-monitor/alerts/", headers=[(b"origin", b"http://localhost")]
        )
        connected, code = await anonymous.connect()
        assert not connected and code == 4401

    run_sockets(scenario)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_beat_task_to_signed_webhook_through_a_real_worker(make_org, http_server):
    from tests.worker import celery_worker, wait_for

    organisation, _ = make_org()
    now = timezone.now()
    if now.minute == 59 and now.second > 30:  # keep the surge in the last complete hour for the whole test
        time.sleep(31)
        now = timezone.now()
    surge_hour = bucket_start(now, "hour") - timedelta(hours=1)
    plant_baseline(organisation, surge_hour)
    plant(organisation, surge_hour, 20, 16)
    http_server.routes["/hook"] = lambda request: (204, {}, b"")
    rule = topic_rule(organisation, webhook_url=f"{http_server.url}/hook")
    with celery_worker(queues="default") as proc:
        tasks.evaluate_alerts.delay()
        delivered = wait_for(
            lambda: Delivery.objects.for_org(organisation).filter(rule=rule, state="delivered").first(),
            proc=proc,
        )
    assert delivered.alert.bucket_start == surge_hour and delivered.status_code == 204
    assert verify(http_server.requests[-1], rule.webhook_secret)["data"]["id"] == delivered.alert_id


@pytest.mark.parametrize("mode", ["body", "headers"])
def test_a_trickling_webhook_receiver_is_given_up_at_the_deadline(trickler, settings, mode):
    settings.OUTBOUND_ALLOW_NETWORKS = ["127.0.0.1/32"]
    server = trickler(mode)
    result = alert_delivery.webhook_post(
        url=server.url + "/hook",
        secret="s",
        body=b"{}",
        event="alert.test",
        timeout=(1.0, 1.0),
        deadline_s=1.5,
    )
    assert result.duration_ms < 2200, result
    if mode == "body":  # the status came in time: delivered, the answer cut short
        assert result.ok and result.status_code == 200 and len(result.excerpt) < 20
    else:
        assert not result.ok and "no answer within 1.5 s" in result.error, result


OLD_ERRORS = {  # (stored error, status code) -> the error once masked
    (
        "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: "
        "/services/T/B/SECRET?token=abc123 (Caused by NewConnectionError('<urllib3.connection.HTTPConnection "
        "object at 0x7f3a>: Failed to establish a new connection: [Errno 111] Connection refused'))",
        None,
    ): "ConnectionError: HTTPConnectionPool(host='127.0.0.1', port=1): Max retries exceeded with url: … "
    "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f3a>: Failed to "
    "establish a new connection: [Errno 111] Connection refused'))",
    ("redirect to https://elsewhere.example/next/SECRET?token=abc123 not followed", 302): (
        "redirect (302) to https://elsewhere.example/… not followed"
    ),
    ("redirect to /moved/SECRET?token=abc123 not followed", 301): (
        "redirect (301) to https://hooks.example/… not followed"
    ),
    (
        "InvalidURL: Failed to parse: https://hooks.example:99999/SECRET",
        None,
    ): "InvalidURL: Failed to parse: …",
    ("SSLError: bad handshake with https://[2001:db8::1]:8443/SECRET/abc123.", None): (
        "SSLError: bad handshake with https://[2001:db8::1]:8443/…."
    ),
    (
        "SMTPRecipientsRefused: {'jane@example.com': (550, b'5.1.1 <jane@example.com>: unknown')}",
        None,
    ): "SMTPRecipientsRefused: {'j…@example.com': (550, b'5.1.1 <j…@example.com>: unknown')}",
    # what the code writes now is left as it is
    ("ConnectionError reaching https://hooks.example/…: Connection refused", None): (
        "ConnectionError reaching https://hooks.example/…: Connection refused"
    ),
    ("redirect (302) to https://elsewhere.example/… not followed", 302): (
        "redirect (302) to https://elsewhere.example/… not followed"
    ),
    ("answered 500", 500): "answered 500",
}


@pytest.mark.django_db
def test_the_migration_masks_urls_and_recipients_in_errors_stored_before_the_fix(make_org):
    """Errors written before delivery errors were masked quote the webhook url's path and query (a secret)
    and the recipients: the data migration masks them as the code now does; newer texts stay as they are,
    and a second run changes nothing."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("finance_monitor.migrations.0010_mask_delivery_errors")
    organisation, _ = make_org()
    rule = topic_rule(organisation)
    target = "https://hooks.example/services/T/B/SECRET?token=abc123"
    stored = {
        (error, status): Delivery.all_tenants.create(
            organisation=organisation,
            rule=rule,
            channel="email" if error.startswith("SMTP") else "webhook",
            target="jane@example.com" if error.startswith("SMTP") else target,
            state="failed",
            status_code=status,
            error=error,
        )
        for error, status in OLD_ERRORS
    }
    migration.mask(apps, None)
    for key, delivery in stored.items():
        delivery.refresh_from_db()
        assert delivery.error == OLD_ERRORS[key], key
        assert "SECRET" not in delivery.error and "abc123" not in delivery.error
        assert "jane@" not in delivery.error
        assert delivery.target in (target, "jane@example.com")  # the rule's managers still see the target
    migration.mask(apps, None)
    assert {k: d.error for k, d in stored.items()} == {
        k: Delivery.all_tenants.get(pk=d.pk).error for k, d in stored.items()
    }
