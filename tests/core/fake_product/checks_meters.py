"""Run by tests/core/test_product_contract.py in a subprocess:
the test-only product's meters (declared in its ``Product``, no core edit) are in the meter table, listed with
their plan limits on the usage page and API, and enforced by ``core.billing.metered``."""

import pytest
from django.test import Client
from django.utils import timezone

from core.billing.models import MeterDefinition, Plan, UsageEvent, plan_limits_write

pytestmark = pytest.mark.django_db


def test_its_meters_are_in_the_meter_table_and_on_every_plan(make_org, api):
    assert {
        m.code: (m.kind, m.unit, m.label) for m in MeterDefinition.objects.filter(code__startswith="fake_")
    } == {"fake_pings": ("flow", "ping", "Fake pings"), "fake_widgets": ("stock", "widget", "Fake widgets")}
    _org, owner = make_org()
    api.force_authenticate(owner)
    plans = {p["code"]: p["limits"] for p in api.get("/api/plans/").json()}
    assert [plans[code]["fake_pings"] for code in ("trial", "pro", "enterprise")] == [3, 300, 3_000]
    assert plans["trial"]["predictions"] == Plan.objects.get(code="trial").predictions_per_month


def test_its_meters_show_on_the_usage_api_and_page(make_org, make_member, api):
    org, owner = make_org()
    make_member(org)
    api.force_authenticate(owner)
    meters = {m["meter"]: m for m in api.get("/api/usage/").json()["meters"]}
    assert meters["fake_pings"] == {
        "meter": "fake_pings",
        "label": "Fake pings",
        "used": 0.0,
        "limit": 3,
        "kind": "monthly",
        "unit": "ping",
    }
    assert meters["fake_widgets"]["used"] == 2 and meters["fake_widgets"]["kind"] == "current"
    client = Client()
    client.force_login(owner)
    page = client.get("/usage/").content.decode()
    assert '<tr data-meter="fake_pings">' in page and "Fake pings" in page


def test_its_flow_meter_is_enforced_and_charged_once_per_key(make_org, api):
    org, owner = make_org()
    api.force_authenticate(owner)
    for n in range(3):
        assert api.post("/api/fake-product/pings/", HTTP_X_PING_ID=f"p{n}").json() == {"pong": True}
    assert api.post("/api/fake-product/pings/", HTTP_X_PING_ID="p0").status_code == 402  # quota first
    refused = api.post("/api/fake-product/pings/")
    assert refused.status_code == 402
    error = refused.json()["error"]
    month = timezone.now().strftime("%Y-%m")
    assert error["message"] == f"Your plan's 3 fake pings per month are used up for {month}."
    assert error["details"]["meter"] == "fake_pings" and error["details"]["limit"] == 3
    assert UsageEvent.objects.for_org(org).filter(meter="fake_pings").count() == 3
    # An operator raises the trial's limit in the meter table: one more ping goes through, and a retry
    # with a key already charged runs but is not charged again.
    plan_limits_write(Plan.objects.get(code="trial").pk, {"fake_pings": 5})
    assert api.post("/api/fake-product/pings/", HTTP_X_PING_ID="p3").status_code == 200
    assert api.post("/api/fake-product/pings/", HTTP_X_PING_ID="p3").status_code == 200
    assert UsageEvent.objects.for_org(org).filter(meter="fake_pings").count() == 4
    assert api.get("/api/usage/").json()["meters"][-2]["used"] == 4


def test_its_stock_meter_refuses_past_the_plan(make_org, make_member):
    from core.billing import services as billing
    from core.errors import QuotaExceeded

    org, _owner = make_org()
    billing.quota_check(organisation=org, meter="fake_widgets", quantity=1)  # 1 member of 2
    make_member(org)
    with pytest.raises(QuotaExceeded, match="All 2 fake widgets on your plan are in use."):
        billing.quota_check(organisation=org, meter="fake_widgets", quantity=1)
