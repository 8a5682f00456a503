"""The alert API and page: rules CRUD for monitor.manage only, alerts with evidence and deliveries for every
member, clear 400s, and no way into another organisation's rules, alerts, deliveries or page."""

import pytest

from core.tenancy.models import Role
from finance_monitor.models import AlertRule
from finance_monitor.services import alerts, entities
from tests.finance_monitor.planting import plant, plant_baseline
from tests.finance_monitor.test_alerts import AFTER, H, topic_rule

BASE = "/api/finance-monitor"


@pytest.mark.django_db
def test_rules_crud_with_clear_errors(make_org, user_client):
    organisation, owner = make_org()
    entry = entities.entity_save(organisation=organisation, kind="company", name="Allstate", ticker="ALL")
    client = user_client(owner)
    made = client.post(
        f"{BASE}/alert-rules/",
        {"name": "Allstate", "target": "entity", "entity": entry.pk, "webhook_url": "https://example.com/h"},
        format="json",
    )
    assert made.status_code == 201, made.json()
    rule = made.json()
    assert rule["entity"] == entry.pk and rule["webhook_secret"].startswith("whsec_")
    assert (rule["granularity"], rule["significance"], rule["test_share"], rule["cooldown_s"]) == (
        "hour",
        0.002,
        True,
        21600,
    )
    changed = client.patch(
        f"{BASE}/alert-rules/{rule['id']}/", {"min_volume": 50, "enabled": False}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["min_volume"] == 50 and not changed.json()["enabled"]
    assert changed.json()["webhook_secret"] == rule["webhook_secret"]  # kept across edits
    assert client.get(f"{BASE}/alert-rules/").json()["results"][0]["id"] == rule["id"]
    bad = [
        ({"name": "x", "webhook_url": "ftp://example.com/h"}, "webhook_url"),
        ({"name": "x", "target": "topic"}, "topic"),
        ({"name": "x", "target": "entity", "entity": 999999}, "entity"),
        ({"name": "x", "significance": 0.9}, "significance"),
        ({"name": "x", "email_recipients": ["nope"]}, "email_recipients"),
        ({"name": "x", "colour": "red"}, "colour"),
        ({"name": "Allstate"}, "name"),
    ]
    for body, field in bad:
        answer = client.post(f"{BASE}/alert-rules/", body, format="json")
        assert answer.status_code == 400 and field in str(answer.json()), (body, answer.json())
    assert AlertRule.objects.for_org(organisation).count() == 1  # nothing half-made
    assert client.delete(f"{BASE}/alert-rules/{rule['id']}/").status_code == 204
    assert client.get(f"{BASE}/alert-rules/{rule['id']}/").status_code == 404


@pytest.mark.django_db
def test_alerts_evidence_deliveries_and_test_webhook(make_org, user_client, http_server):
    organisation, owner = make_org()
    http_server.routes["/hook"] = lambda request: (200, {}, b"ok")
    plant_baseline(organisation, H)
    surge = plant(organisation, H, 20, 16)
    rule = topic_rule(organisation, webhook_url=f"{http_server.url}/hook")
    [alert] = alerts.alert_rule_evaluate(rule=rule, now=AFTER)
    client = user_client(owner)
    listed = client.get(f"{BASE}/alerts/?kind=share&rule={rule.pk}").json()["results"]
    assert [a["id"] for a in listed] == [alert.pk] and listed[0]["rule_name"] == "macro surge"
    assert client.get(f"{BASE}/alerts/?kind=volume").json()["results"] == []
    assert client.get(f"{BASE}/alerts/?since=2026-12-01T00:00:00Z").json()["results"] == []
    assert client.get(f"{BASE}/alerts/?kind=loud").status_code == 400
    assert client.get(f"{BASE}/alerts/?since=yesterday").status_code == 400
    detail = client.get(f"{BASE}/alerts/{alert.pk}/").json()
    assert {d["id"] for d in detail["evidence"]} == set(surge[:16])
    assert all(d["sentiment"] == "negative" for d in detail["evidence"]) and detail["p_value"] < 0.01
    tested = client.post(f"{BASE}/alert-rules/{rule.pk}/test-webhook")
    assert (
        tested.status_code == 200 and tested.json()["state"] == "delivered" and tested.json()["alert"] is None
    )
    from finance_monitor.services.alert_delivery import alert_webhook_attempt

    alert_webhook_attempt(alert=alert, attempt=1)
    per_alert = client.get(f"{BASE}/alerts/{alert.pk}/deliveries/").json()["results"]
    assert [(d["channel"], d["attempt"], d["state"], d["status_code"]) for d in per_alert] == [
        ("webhook", 1, "delivered", 200)
    ]
    per_rule = client.get(f"{BASE}/alert-rules/{rule.pk}/deliveries/").json()["results"]
    assert len(per_rule) == 2
    no_hook = topic_rule(organisation, name="quiet")
    refused = client.post(f"{BASE}/alert-rules/{no_hook.pk}/test-webhook")
    assert refused.status_code == 400 and "no webhook" in refused.json()["error"]["message"]


@pytest.mark.django_db
def test_permissions_and_tenant_isolation(
    make_org, make_member, make_key, user_client, key_client, http_server
):
    organisation, owner = make_org()
    plant_baseline(organisation, H)
    plant(organisation, H, 20, 16)
    rule = topic_rule(organisation, webhook_url=f"{http_server.url}/hook")
    [alert] = alerts.alert_rule_evaluate(rule=rule, now=AFTER)
    rule_urls = [
        f"{BASE}/alert-rules/",
        f"{BASE}/alert-rules/{rule.pk}/",
        f"{BASE}/alert-rules/{rule.pk}/deliveries/",
    ]
    alert_urls = [f"{BASE}/alerts/", f"{BASE}/alerts/{alert.pk}/", f"{BASE}/alerts/{alert.pk}/deliveries/"]
    # viewers and operators read alerts, never rules (their webhook secrets) nor change them
    for role in (Role.VIEWER, Role.OPERATOR):
        member = user_client(make_member(organisation, role))
        assert all(member.get(url).status_code == 200 for url in alert_urls)
        assert all(member.get(url).status_code == 403 for url in rule_urls)
        assert member.post(f"{BASE}/alert-rules/", {"name": "x"}, format="json").status_code == 403
        assert (
            member.patch(f"{BASE}/alert-rules/{rule.pk}/", {"enabled": False}, format="json").status_code
            == 403
        )
        assert member.post(f"{BASE}/alert-rules/{rule.pk}/test-webhook").status_code == 403
        assert member.delete(f"{BASE}/alert-rules/{rule.pk}/").status_code == 403
    _, read_secret = make_key(organisation, scopes=("read",))
    reader = key_client(read_secret)
    assert reader.get(alert_urls[1]).status_code == 200 and reader.get(rule_urls[1]).status_code == 403
    _, admin_secret = make_key(organisation, scopes=("admin",))
    assert key_client(admin_secret).get(rule_urls[1]).status_code == 200
    # another organisation's owner: 404 on every object, empty lists, nothing changed or sent
    other, other_owner = make_org()
    stranger = user_client(other_owner)
    for url in rule_urls[1:] + alert_urls[1:]:
        assert stranger.get(url).status_code == 404, url
    assert stranger.get(rule_urls[0]).json()["results"] == []
    assert stranger.get(alert_urls[0]).json()["results"] == []
    assert stranger.patch(rule_urls[1], {"enabled": False}, format="json").status_code == 404
    assert stranger.post(f"{BASE}/alert-rules/{rule.pk}/test-webhook").status_code == 404
    assert stranger.delete(rule_urls[1]).status_code == 404
    assert http_server.requests == []
    rule.refresh_from_db()
    assert rule.enabled
    # the page: the alert and its evidence for members of the organisation only
    page = user_client(owner).get("/finance-monitor/alerts/")
    assert page.status_code == 200 and f'data-alert="{alert.pk}"' in page.content.decode()
    assert "macro report number" in page.content.decode()
    partial = user_client(owner).get("/finance-monitor/alerts/?partial=1").content.decode()
    assert f'data-alert="{alert.pk}"' in partial and "<html" not in partial
    theirs = stranger.get("/finance-monitor/alerts/")
    assert theirs.status_code == 200 and f'data-alert="{alert.pk}"' not in theirs.content.decode()


@pytest.mark.django_db
def test_the_webhook_url_never_reaches_viewers_through_deliveries(
    make_org, make_member, make_key, user_client, key_client, settings
):
    """A webhook url is a bearer secret: deliveries show viewers and read keys its host only, and no stored
    error quotes its path or query (requests' exception text does)."""
    from finance_monitor.services.alert_delivery import alert_webhook_attempt

    settings.OUTBOUND_ALLOW_NETWORKS = ["127.0.0.1/32"]
    organisation, owner = make_org()
    plant_baseline(organisation, H)
    plant(organisation, H, 20, 16)
    secret_url = "http://127.0.0.1:1/services/T0001/B0001/SECRETTOKENxyz?token=abc123"  # nothing listens
    rule = topic_rule(organisation, webhook_url=secret_url, email_recipients=["jane@example.com"])
    [alert] = alerts.alert_rule_evaluate(rule=rule, now=AFTER)
    delivery = alert_webhook_attempt(alert=alert, attempt=1)
    assert delivery.state == "retrying" and "Connection refused" in delivery.error, delivery.error
    assert "127.0.0.1" in delivery.error and "SECRET" not in delivery.error and "abc123" not in delivery.error
    url = f"{BASE}/alerts/{alert.pk}/deliveries/"
    _, read_secret = make_key(organisation, scopes=("read",))
    for client in (user_client(make_member(organisation, Role.VIEWER)), key_client(read_secret)):
        [shown] = client.get(url).json()["results"]
        assert shown["target"] == "http://127.0.0.1:1/…", shown
        assert "SECRET" not in str(shown) and "abc123" not in str(shown)
    [managed] = user_client(owner).get(url).json()["results"]
    assert managed["target"] == secret_url


def test_masked_targets_keep_the_host_and_the_recipients_domains():
    from finance_monitor.services.alert_delivery import target_masked

    assert target_masked(channel="webhook", target="https://hooks.slack.com/services/T/B/X?y=1") == (
        "https://hooks.slack.com/…"
    )
    assert (
        target_masked(channel="webhook", target="http://[2001:db8::1]:8080/a")
        == "http://[2001:db8::1]:8080/…"
    )
    assert target_masked(channel="email", target="jane@example.com, ops@corp.example") == (
        "j…@example.com, o…@corp.example"
    )


@pytest.mark.django_db
def test_an_organisation_keeps_at_most_200_alert_rules(make_org, user_client):
    """A noisy neighbour cannot fill beat's evaluation with rules: the 201st is a 400 saying the cap, another
    organisation is not affected, and deleting one makes room."""
    organisation, owner = make_org()
    AlertRule.all_tenants.bulk_create(
        [AlertRule(organisation=organisation, name=f"rule {n}") for n in range(alerts.MAX_RULES - 1)]
    )
    client = user_client(owner)
    last = client.post(f"{BASE}/alert-rules/", {"name": "the last one"}, format="json")
    assert last.status_code == 201, last.json()
    over = client.post(f"{BASE}/alert-rules/", {"name": "one too many"}, format="json")
    assert over.status_code == 400
    assert over.json()["error"]["message"] == (
        "An organisation keeps at most 200 alert rules: delete one to add another."
    )
    assert AlertRule.objects.for_org(organisation).count() == 200
    renamed = client.patch(f"{BASE}/alert-rules/{last.json()['id']}/", {"name": "renamed"}, format="json")
    assert renamed.status_code == 200  # a change is not a new rule
    _, other_owner = make_org()
    assert (
        user_client(other_owner).post(f"{BASE}/alert-rules/", {"name": "x"}, format="json").status_code == 201
    )
    assert client.delete(f"{BASE}/alert-rules/{last.json()['id']}/").status_code == 204
    assert client.post(f"{BASE}/alert-rules/", {"name": "one too many"}, format="json").status_code == 201
