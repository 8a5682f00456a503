"""The alerts page's rule form: members with ``monitor.manage`` (the API's permission) create rules there
through the API's service, turn them off and on, and delete them; bad input is a form error beside its field
(never a 500, nothing stored); viewers see the rules without the forms and are refused; the forms are
CSRF-protected POSTs that redirect with a flash message."""

import pytest
from django.test import Client
from django.utils import timezone

from core.tenancy.models import Role
from finance_monitor.models import Alert, AlertRule, Entity
from tests.conftest import PASSWORD, flash_text, logged_in_client

pytestmark = pytest.mark.django_db

PAGE = "/finance-monitor/alerts/"
ADD = "/finance-monitor/alerts/rules/"
RULE = {
    "name": "Bank stress",
    "target": "topic",
    "topic": "Banks",
    "entity": "",
    "granularity": "hour",
    "baseline_buckets": "168",
    "min_volume": "20",
    "significance": "0.001",
    "test_share": "on",
    "cooldown_s": "3600",
    "email_recipients": "risk@example.com, desk@example.com",
    "webhook_url": "",
}


def test_a_manager_creates_disables_enables_and_deletes_a_rule(make_org):
    organisation, owner = make_org()
    client = logged_in_client(owner)
    page = client.get(PAGE).content.decode()
    assert 'id="rule-form"' in page and "No rules yet." in page
    answer = client.post(ADD, RULE, follow=True)
    assert answer.redirect_chain == [(PAGE + "#rules", 302)]
    assert "Rule 'Bank stress' created" in flash_text(answer)
    rule = AlertRule.objects.for_org(organisation).get()
    assert (rule.target, rule.topic, rule.min_volume, rule.significance) == ("topic", "Banks", 20, 0.001)
    assert (rule.test_share, rule.test_volume, rule.cooldown_s, rule.enabled) == (True, False, 3600, True)
    assert rule.email_recipients == ["risk@example.com", "desk@example.com"]
    assert f'data-rule="{rule.pk}"' in answer.content.decode()

    off = client.post(f"/finance-monitor/alerts/rules/{rule.pk}/enabled", {"enabled": "0"}, follow=True)
    assert "Rule 'Bank stress' disabled." in flash_text(off) and "(disabled)" in off.content.decode()
    rule.refresh_from_db()
    assert not rule.enabled
    on = client.post(f"/finance-monitor/alerts/rules/{rule.pk}/enabled", {"enabled": "1"}, follow=True)
    assert "enabled" in flash_text(on)
    rule.refresh_from_db()
    assert rule.enabled
    unclear = client.post(
        f"/finance-monitor/alerts/rules/{rule.pk}/enabled", {"enabled": "maybe"}, follow=True
    )
    assert "Say whether" in flash_text(unclear)
    rule.refresh_from_db()
    assert rule.enabled

    Alert.objects.for_org(organisation).create(
        organisation=organisation,
        rule=rule,
        kind="share",
        dimension="topic",
        granularity="hour",
        bucket_start=timezone.now().replace(minute=0, second=0, microsecond=0),
        fired_at=timezone.now(),
        volume=30,
        negative=20,
        observed=0.67,
        baseline=0.1,
        baseline_volume=500,
        p_value=1e-6,
        evidence_count=0,
    )
    gone = client.post(f"/finance-monitor/alerts/rules/{rule.pk}/delete", follow=True)
    assert "Rule 'Bank stress' deleted with its 1 alert." in flash_text(gone)
    assert not AlertRule.objects.for_org(organisation).exists()
    assert client.post(f"/finance-monitor/alerts/rules/{rule.pk}/delete").status_code == 404


def test_bad_input_is_a_form_error_and_stores_nothing(make_org):
    organisation, owner = make_org()
    other, _ = make_org()
    theirs = Entity.objects.for_org(other).create(organisation=other, kind="company", name="Elsewhere")
    client = logged_in_client(owner)
    cases = [
        ({"significance": "0.9"}, "significance", "less than or equal to 0.2"),
        ({"significance": "lots"}, "significance", "Enter a number"),
        ({"min_volume": "0"}, "min_volume", "greater than or equal to 1"),
        ({"topic": ""}, "topic", "A topic rule needs its topic."),  # the service's check
        ({"target": "entity", "entity": ""}, "entity", "A watch-list rule needs its entry."),
        ({"target": "entity", "entity": str(theirs.pk)}, "entity", "valid choice"),  # not this tenant's
        ({"test_share": ""}, "test_share", "the negative share, the volume, or both"),
        ({"email_recipients": "risk@example.com, nobody"}, "email_recipients", "Not an e-mail address"),
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url", "must be http or https"),  # the service
        ({"name": ""}, "name", "required"),
    ]
    for change, field, message in cases:
        answer = client.post(ADD, {**RULE, **change})
        assert answer.status_code == 400, change
        errors = " ".join(answer.context["rule_form"].errors.get(field, []))
        assert message in errors, (change, answer.context["rule_form"].errors)
    assert not AlertRule.objects.for_org(organisation).exists()
    assert client.post(ADD, RULE).status_code == 302
    twice = client.post(ADD, RULE)
    assert twice.status_code == 400 and "A rule with this name exists." in twice.content.decode()
    assert AlertRule.objects.for_org(organisation).count() == 1


def test_viewers_see_the_rules_without_the_forms_and_are_refused(make_org, make_member):
    organisation, owner = make_org()
    logged_in_client(owner).post(ADD, RULE)
    rule = AlertRule.objects.for_org(organisation).get()
    viewer = logged_in_client(make_member(organisation, Role.VIEWER))
    page = viewer.get(PAGE)
    html = page.content.decode()
    assert page.status_code == 200 and f'data-rule="{rule.pk}"' in html and "Bank stress" in html
    assert 'id="rule-form"' not in html and "alert-rule-" not in html and "/delete" not in html
    assert viewer.post(ADD, {**RULE, "name": "Mine"}).status_code == 403
    assert (
        viewer.post(f"/finance-monitor/alerts/rules/{rule.pk}/enabled", {"enabled": "0"}).status_code == 403
    )
    assert viewer.post(f"/finance-monitor/alerts/rules/{rule.pk}/delete").status_code == 403
    rule.refresh_from_db()
    assert rule.enabled and AlertRule.objects.for_org(organisation).count() == 1
    # another organisation's manager: not found, never theirs to change
    _, stranger = make_org()
    assert (
        logged_in_client(stranger).post(f"/finance-monitor/alerts/rules/{rule.pk}/delete").status_code == 404
    )
    assert AlertRule.objects.for_org(organisation).exists()


def test_the_rule_forms_are_csrf_protected(make_org):
    organisation, owner = make_org()
    logged_in_client(owner).post(ADD, RULE)
    rule = AlertRule.objects.for_org(organisation).get()
    strict = Client(enforce_csrf_checks=True)
    assert strict.login(username=owner.username, password=PASSWORD)
    assert strict.post(ADD, {**RULE, "name": "Other"}).status_code == 403
    assert (
        strict.post(f"/finance-monitor/alerts/rules/{rule.pk}/enabled", {"enabled": "0"}).status_code == 403
    )
    assert strict.post(f"/finance-monitor/alerts/rules/{rule.pk}/delete").status_code == 403
    rule.refresh_from_db()
    assert rule.enabled and AlertRule.objects.for_org(organisation).count() == 1


def test_the_rule_form_says_the_cap_when_the_organisation_has_200_rules(make_org):
    from finance_monitor.services.alerts import MAX_RULES

    organisation, owner = make_org()
    AlertRule.all_tenants.bulk_create(
        [AlertRule(organisation=organisation, name=f"rule {n}") for n in range(MAX_RULES)]
    )
    answer = logged_in_client(owner).post(ADD, RULE)
    assert answer.status_code == 400
    assert (
        "An organisation keeps at most 200 alert rules: delete one to add another." in answer.content.decode()
    )
    assert AlertRule.objects.for_org(organisation).count() == MAX_RULES
