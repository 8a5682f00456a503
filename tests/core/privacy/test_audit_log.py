"""The audit log: who created and revoked keys, changed roles and plans, forced promotions; owners read it."""

import pytest
from django.test import Client

from core.billing import services as billing
from core.privacy.audit import audit_event_list
from core.tenancy import services as tenancy


@pytest.mark.django_db
def test_key_role_and_plan_changes_are_recorded_with_who_did_them(make_org, make_member, user_client):
    org, owner = make_org()
    other, _ = make_org()
    key, _ = tenancy.api_key_create(organisation=org, created_by=owner, name="ci", scopes=["read"])
    tenancy.api_key_revoke(organisation=org, key_id=key.pk, actor=owner)
    tenancy.api_key_revoke(organisation=org, key_id=key.pk, actor=owner)  # already revoked: no second line
    member = make_member(org, "viewer")
    api = user_client(owner)
    mid = api.get("/api/members/").json()["results"][-1]["id"]
    assert api.patch(f"/api/members/{mid}/", {"role": "operator"}, format="json").status_code == 200
    assert api.post("/api/subscription/", {"plan": "pro"}, format="json").status_code == 200
    actions = [e.action for e in audit_event_list(organisation=org)]
    assert actions == ["plan.change", "member.role_change", "api_key.revoke", "api_key.create"]
    assert all(e.actor_email == owner.email for e in audit_event_list(organisation=org))
    change = audit_event_list(organisation=org, action="member.role_change").get()
    assert change.details == {"from": "viewer", "to": "operator"} and change.target == f"member:{mid}"
    assert not audit_event_list(organisation=other).exists()  # tenant-scoped
    assert member.email not in str([e.details for e in audit_event_list(organisation=org)])


@pytest.mark.django_db
def test_owners_read_the_log_paginated_others_are_refused(make_org, make_member, make_key, user_client):
    org, owner = make_org()
    for n in range(3):
        tenancy.api_key_create(organisation=org, created_by=owner, name=f"k{n}", scopes=["read"])
    api = user_client(owner)
    page = api.get("/api/organisation/audit-log/?page_size=2").json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    assert (
        page["results"][0]["action"] == "api_key.create" and page["results"][0]["actor_email"] == owner.email
    )
    filtered = api.get("/api/organisation/audit-log/?action=plan.change").json()
    assert filtered["count"] == 0
    assert api.get("/api/organisation/audit-log/?action=nonsense").status_code == 400
    assert user_client(make_member(org, "admin")).get("/api/organisation/audit-log/").status_code == 403
    _key, secret = make_key(org, scopes=("read", "admin"))
    machine = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert machine.get("/api/organisation/audit-log/").status_code == 403  # people only
    browser = Client()
    browser.force_login(owner)
    html = browser.get("/organisation/audit-log/").content.decode()
    assert "api_key.create" in html and owner.email in html
    assert 'href="/organisation/privacy/"' in browser.get("/members/").content.decode()
    admin = Client()
    admin.force_login(make_member(org, "admin"))
    assert admin.get("/organisation/audit-log/").status_code == 403


@pytest.mark.django_db
def test_plan_change_by_a_key_names_the_key(make_org):
    org, _owner = make_org()
    key, _ = tenancy.api_key_create(organisation=org, created_by=None, name="m", scopes=["admin"])
    billing.subscription_change_plan(organisation=org, plan_code="pro", actor=key)
    line = audit_event_list(organisation=org, action="plan.change").get()
    assert line.actor_key == key.prefix and line.actor is None and line.details["to"] == "pro"
