import pytest
from django.core.cache import cache
from django.test import override_settings

from core.billing import services as billing
from core.billing.models import Plan, UsageEvent
from core.tenancy.models import ApiKey, Membership, Role

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _clear_cache():
    cache.clear()


def _error(response):
    body = response.json()
    assert set(body) == {"error"} and {"code", "message", "details"} <= set(body["error"])
    return body["error"]


def test_organisation_with_key_and_session(make_org, make_key, key_client, user_client):
    org, owner = make_org("Acme Ltd")
    _, secret = make_key(org)
    assert key_client(secret).get("/api/organisation/").json()["name"] == "Acme Ltd"
    assert user_client(owner).get("/api/organisation/").json()["slug"] == org.slug


def test_unauthenticated_and_bad_keys_are_401(make_org, api, key_client):
    make_org()
    assert _error(api.get("/api/organisation/"))["code"] == "not_authenticated"
    response = key_client("trl_nope_nope").get("/api/organisation/")
    assert response.status_code == 401 and _error(response)["message"] == "Invalid API key."


def test_key_scopes_are_enforced(make_org, make_key, key_client):
    org, _ = make_org()
    _, secret = make_key(org, scopes=["read"])
    response = key_client(secret).post("/api/keys/", {"name": "x", "scopes": ["read"]}, format="json")
    assert response.status_code == 403 and "scope" in _error(response)["message"]
    assert ApiKey.objects.for_org(org).count() == 1


def test_key_creation_returns_secret_once(make_org, user_client):
    org, owner = make_org()
    client = user_client(owner)
    created = client.post("/api/keys/", {"name": "deploy", "scopes": ["read", "predict"]}, format="json")
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith(created.json()["prefix"])
    listed = client.get("/api/keys/").json()["results"]
    assert listed[0]["prefix"] == created.json()["prefix"] and "secret" not in listed[0]
    revoked = client.delete(f"/api/keys/{created.json()['id']}/")
    assert revoked.json()["revoked_at"] is not None


def test_viewer_cannot_manage(make_org, make_member, user_client):
    org, _ = make_org()
    viewer = make_member(org, Role.VIEWER)
    response = user_client(viewer).post(
        "/api/invitations/", {"email": "a@b.com", "role": "viewer"}, format="json"
    )
    assert response.status_code == 403 and "viewer" in _error(response)["message"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b'{"name": ', "application/json", 400, "parse_error"),
        (b'{"name": "\xff\xfe"}', "application/json", 400, "parse_error"),
        (b"name=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"name": "x", "scopes": ["read"], "colour": "red"}', "application/json", 400, "invalid"),
        (b'{"name": "x", "scopes": ["root"]}', "application/json", 400, "invalid"),
        (b'["name"]', "application/json", 400, "invalid"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(make_org, user_client, body, content_type, status, code):
    org, owner = make_org()
    response = user_client(owner).generic("POST", "/api/keys/", body, content_type=content_type)
    assert response.status_code == status, response.content
    assert _error(response)["code"] == code
    assert ApiKey.objects.for_org(org).count() == 0


def test_unknown_field_names_the_field(make_org, user_client):
    org, owner = make_org()
    response = user_client(owner).patch("/api/organisation/", {"name": "N", "plan": "free"}, format="json")
    assert response.status_code == 400 and "plan: Unknown field." in _error(response)["message"]
    org.refresh_from_db()
    assert org.name != "N"


@override_settings(API_MAX_BODY_BYTES=100)
def test_body_over_limit_is_413(make_org, user_client):
    org, owner = make_org()
    response = user_client(owner).post("/api/keys/", {"name": "x" * 200, "scopes": ["read"]}, format="json")
    assert response.status_code == 413 and "limit is 100" in _error(response)["message"]
    assert ApiKey.objects.for_org(org).count() == 0


def test_invalid_role_change_is_400(make_org, make_member, user_client):
    org, owner = make_org()
    member = make_member(org)
    m = Membership.objects.for_org(org).get(user=member)
    response = user_client(owner).patch(f"/api/members/{m.pk}/", {"role": "emperor"}, format="json")
    assert response.status_code == 400 and _error(response)["details"]["role"]
    m.refresh_from_db()
    assert m.role == Role.VIEWER


def test_invalid_plan_change_is_400(make_org, user_client, make_member):
    org, owner = make_org()
    response = user_client(owner).post("/api/subscription/", {"plan": "gold"}, format="json")
    assert response.status_code == 400 and "Unknown plan" in _error(response)["message"]
    admin = make_member(org, Role.ADMIN)
    assert user_client(admin).post("/api/subscription/", {"plan": "pro"}, format="json").status_code == 403
    ok = user_client(owner).post("/api/subscription/", {"plan": "pro"}, format="json")
    assert ok.status_code == 200 and ok.json()["plan_code"] == "pro"


def test_rate_limit_429_with_retry_after_records_no_usage(make_org, make_key, key_client):
    org, _ = make_org()
    Plan.objects.filter(code="trial").update(requests_per_minute=3)
    _, secret = make_key(org)
    client = key_client(secret)
    statuses = [client.get("/api/organisation/").status_code for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    response = client.get("/api/organisation/")
    assert response.status_code == 429 and 1 <= int(response["Retry-After"]) <= 61
    assert _error(response)["code"] == "rate_limited"
    assert UsageEvent.objects.for_org(org).filter(meter="api_calls").count() == 3


def test_a_new_key_that_gets_an_old_keys_id_starts_with_a_fresh_allowance(make_org, make_key):
    """SQLite hands a deleted row's id out again (the embedded default; every transactional test): the
    rate-limit bucket belongs to the key, not to a database id."""
    from types import SimpleNamespace

    from core.api.throttling import ApiKeyRateThrottle

    org, _ = make_org()
    Plan.objects.filter(code="trial").update(requests_per_minute=2)
    old, _ = make_key(org)
    throttle = ApiKeyRateThrottle()
    assert [throttle.allow_request(SimpleNamespace(auth=old), None) for _ in range(3)] == [True, True, False]
    new, _ = make_key(org)
    new.pk = old.pk  # the id SQLite gives the next key once the old row is gone
    assert throttle.allow_request(SimpleNamespace(auth=new), None) is True


def test_quota_402_names_meter_limit_period_and_records_nothing(make_org, make_key, key_client):
    org, _ = make_org()
    limit = Plan.objects.get(code="trial").api_calls_per_month
    billing.usage_record(organisation=org, meter="api_calls", quantity=limit)
    _, secret = make_key(org)
    response = key_client(secret).get("/api/organisation/")
    assert response.status_code == 402
    details = _error(response)["details"]
    assert details["meter"] == "api_calls" and details["limit"] == limit and details["period"]
    assert UsageEvent.objects.for_org(org).filter(meter="api_calls").count() == 1


def test_usage_endpoint_and_events(make_org, make_key, key_client):
    org, _ = make_org()
    key, secret = make_key(org)
    client = key_client(secret)
    client.get("/api/organisation/")
    usage = client.get("/api/usage/").json()
    meters = {m["meter"]: m for m in usage["meters"]}
    assert meters["api_calls"]["used"] == 1 and usage["plan_code"] == "trial"
    events = client.get("/api/usage/events/?meter=api_calls").json()
    assert events["count"] == 2 and events["results"][-1]["api_key_prefix"] == key.prefix


def test_schema_and_docs(api):
    schema = api.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/jobs/{job_id}/cancel/" in schema.content
    docs = api.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_pagination(make_org, make_key, key_client):
    org, _ = make_org()
    for _ in range(3):
        billing.usage_record(organisation=org, meter="predictions")
    _, secret = make_key(org)
    page = key_client(secret).get("/api/usage/events/?meter=predictions&page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
