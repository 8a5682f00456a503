"""Every API call through the full stack (Django + DRF), metered at request speed with Redis.

The key, its organisation, subscription and plan limits come from the per-process key cache; the API-call
quota is read from the Redis counter and the call's ledger line goes through the ledger stream
(``core.billing.streamed``), so a steady-state call writes nothing to the database for its metering. Inside a
transaction (no Redis, or a test's own transaction) the same calls charge through the database.
"""

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.billing import flusher
from core.billing import services as billing
from core.billing.models import Plan, PlanLimit, UsageEvent

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="the ledger stream lives in Redis (REDIS_URL)"),
]


def _api_calls(org) -> list[UsageEvent]:
    flusher.ledger_drain()
    return list(UsageEvent.objects.for_org(org).filter(meter="api_calls").order_by("pk"))


def test_a_steady_call_reads_and_writes_nothing_for_its_key_or_its_meter(make_org, make_key, key_client):
    org, _ = make_org()
    key, secret = make_key(org)
    client = key_client(secret)
    assert client.get("/api/organisation/").status_code == 200  # the key enters the cache
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/organisation/")
    assert response.status_code == 200
    statements = " ".join(q["sql"] for q in queries.captured_queries).lower()
    for table in ("tenancy_apikey", "billing_subscription", "billing_planlimit", "billing_usage"):
        assert table not in statements, statements
    lines = _api_calls(org)
    assert [line.api_key_id for line in lines] == [key.pk, key.pk]
    assert all(line.idempotency_key.startswith("req:") for line in lines)  # written once by the flusher
    assert lines[-1].metadata == {"method": "GET", "path": "/api/organisation/", "status": 200}
    assert billing.period_used(organisation=org, meter="api_calls") == 2
    # a refused call (404) is not charged, through the stream either
    assert client.get("/api/jobs/999999999/").status_code == 404
    assert len(_api_calls(org)) == 2


def test_the_quota_counts_calls_still_in_the_stream_and_refuses_with_402(make_org, make_key, key_client):
    org, _ = make_org()
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id="api_calls", defaults={"limit": 3})
    _, secret = make_key(org)
    client = key_client(secret)
    flusher.flusher_stop()  # nothing reaches the database: the Redis counter alone must hold the line
    assert [client.get("/api/organisation/").status_code for _ in range(4)] == [200, 200, 200, 402]
    refusal = client.get("/api/organisation/").json()["error"]
    assert refusal["details"]["meter"] == "api_calls" and refusal["details"]["limit"] == 3
    assert len(_api_calls(org)) == 3  # the refused calls charged nothing


def test_a_plan_change_is_seen_by_the_next_call_of_a_cached_key(make_org, make_key, key_client):
    org, _ = make_org()
    _, secret = make_key(org)
    client = key_client(secret)
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id="api_calls", defaults={"limit": 1})
    assert client.get("/api/organisation/").status_code == 200
    assert client.get("/api/organisation/").status_code == 402  # the cached key carries the trial's limit
    billing.subscription_change_plan(organisation=org, plan_code="pro")
    changed = client.get("/api/organisation/")
    assert changed.status_code == 200, changed.json()  # at once in this process
    # a plan's limit edited (the admin saves the row) is seen as well
    pro = Plan.objects.get(code="pro")
    PlanLimit.objects.update_or_create(plan=pro, meter_id="api_calls", defaults={"limit": 2})
    assert client.get("/api/organisation/").status_code == 402
