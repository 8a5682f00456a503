import re

import pytest
from django.core import mail

from core.tenancy.models import ApiKey, Membership, Organisation, Role, User
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_signup_page_creates_org_and_logs_in(client):
    response = client.post(
        "/signup/",
        {"organisation_name": "Blue Fin", "email": "Ann@Example.com", "password": PASSWORD},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == "/dashboard/"
    assert b"Blue Fin" in response.content and b"free trial" in response.content
    assert Organisation.objects.filter(name="Blue Fin").exists()


def test_signup_errors_are_shown_on_the_form(client, make_org):
    _, owner = make_org()
    response = client.post("/signup/", {"organisation_name": "X", "email": owner.email, "password": PASSWORD})
    assert response.status_code == 200 and b"already exists" in response.content
    response = client.post("/signup/", {"organisation_name": "X", "email": "n@x.com", "password": "password"})
    assert b"too common" in response.content and not User.objects.filter(email="n@x.com").exists()


def test_login_logout_and_password_reset(client, make_org):
    _, owner = make_org()
    assert client.post("/accounts/login/", {"username": owner.email, "password": "wrong"}).status_code == 200
    response = client.post("/accounts/login/", {"username": owner.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/dashboard/").status_code == 302
    client.post("/accounts/password_reset/", {"email": owner.email})
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", mail.outbox[-1].body).group(1)
    form = client.get(link, follow=True)
    new = "brand-new-password-77"
    client.post(form.redirect_chain[-1][0], {"new_password1": new, "new_password2": new})
    assert client.login(username=owner.email, password=new)


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/",
        "/members/",
        "/keys/",
        "/usage/",
        "/billing/",
        "/jobs/",
        "/customer-service/",
        "/finance-monitor/",
        "/recommender/",
    ],
)
def test_pages_render_for_owner(client, make_org, path):
    _, owner = make_org("Pagey")
    client.force_login(owner)
    response = client.get(path)
    assert response.status_code == 200 and b"Pagey" in response.content


@pytest.mark.parametrize("ids", ["%C2%B2", "1,%D9%A3", "1,x"])  # superscript two, Arabic-Indic three
def test_jobs_status_refuses_ids_that_are_not_ascii_numbers(client, make_org, ids):
    _, owner = make_org()
    client.force_login(owner)
    response = client.get(f"/jobs/status/?ids={ids}")
    assert response.status_code == 400 and "job numbers" in response.json()["error"]
    assert client.get("/jobs/status/?ids=1,2,").json() == {"jobs": []}  # a trailing comma is fine


def test_viewer_cannot_open_key_page_or_change_plan(client, make_org, make_member):
    org, _ = make_org()
    viewer = make_member(org, Role.VIEWER)
    client.force_login(viewer)
    assert client.get("/keys/").status_code == 403
    assert client.post("/billing/", {"plan": "pro"}).status_code == 403


def test_key_page_shows_secret_once(client, make_org):
    org, owner = make_org()
    client.force_login(owner)
    response = client.post("/keys/", {"name": "ci", "scopes": ["read"]})
    assert response.status_code == 302  # a reload of the result page cannot create a second key
    response = client.get(response["Location"])
    secret = re.search(rb'id="new-secret">([^<]+)<', response.content).group(1).decode()
    key = ApiKey.objects.for_org(org).get()
    assert secret.startswith(key.prefix)
    again = client.get("/keys/")
    assert key.prefix.encode() in again.content and secret.encode() not in again.content


def test_invite_and_accept_through_pages(client, make_org):
    org, owner = make_org()
    client.force_login(owner)
    client.post("/members/", {"email": "new@example.com", "role": "operator"})
    link = re.search(r"http://testserver(/invitations/\S+/)", mail.outbox[-1].body).group(1)
    client.logout()
    assert b"Join" in client.get(link).content
    response = client.post(link, {"password": "fresh-password-42"}, follow=True)
    assert response.redirect_chain[-1][0] == "/dashboard/"
    membership = Membership.objects.for_org(org).get(user__email="new@example.com")
    assert membership.role == Role.OPERATOR


def test_billing_page_changes_plan(client, make_org):
    org, owner = make_org()
    client.force_login(owner)
    client.post("/billing/", {"plan": "pro"})
    assert b"You are on <strong>Pro</strong>" in client.get("/billing/").content
    response = client.post("/billing/", {"plan": "trial"}, follow=True)
    assert b"cannot be restarted" in response.content


def test_django_admin_is_for_staff_only(client, make_org):
    org, owner = make_org()
    client.force_login(owner)
    assert client.get("/admin/").status_code == 302  # not staff: sent to the admin login
    owner.is_staff = owner.is_superuser = True
    owner.save()
    for path in (
        "/admin/",
        "/admin/billing/usageevent/",
        "/admin/jobs/trainingjob/",
        "/admin/registry/modelversion/",
    ):
        assert client.get(path).status_code == 200, path


def test_the_dashboards_recent_jobs_read_as_sentences_with_their_progress_in_percent(client, make_org):
    from core.jobs import services as jobs
    from core.jobs.describe import job_sentence
    from core.jobs.models import TrainingJob

    org, owner = make_org()
    job = jobs.job_create(organisation=org, kind="finance_monitor.train_default", params={"task": "topic"})
    TrainingJob.objects.for_org(org).filter(pk=job.pk).update(progress=0.39)
    job.refresh_from_db()
    client.force_login(owner)
    html = client.get("/dashboard/").content.decode()
    row = html.split('id="recent-jobs"')[1].split("</table>")[0]
    assert "39%" in row and "0.39" not in row
    assert "finance_monitor.train_default" not in row and job_sentence(job)[:40] in row
