"""Run by tests/core/test_product_contract.py in a subprocess, under the settings
``tests.core.fake_product.settings`` (the file name keeps it out of the normal collection): the
test-only product is served, navigated to, permitted, scheduled and run like the real ones, though no core
file names it."""

import re

import pytest
from django.test import Client

from tests.conftest import PASSWORD
from tests.sockets import Socket, run_sockets


def _nav(html: str) -> list[str]:
    return re.findall(r">([^<]+)</a>", re.search(r"<nav>(.*?)</nav>", html, re.S).group(1))


@pytest.mark.django_db
def test_its_page_and_nav_entry_for_members_with_its_permission(make_org, make_member):
    org, owner = make_org()
    client = Client()
    client.force_login(owner)
    page = client.get("/fake-product/")
    assert page.status_code == 200
    assert _nav(page.content.decode())[:6] == [
        "Dashboard",
        "Customer service",
        "Support analytics",
        "Finance monitor",
        "Recommender",
        "Fake product",
    ]
    dashboard = client.get("/dashboard/").content.decode()
    assert '<a href="/fake-product/">Fake product</a>' in dashboard and "Only in the tests." in dashboard
    datasets = client.get("/datasets/").content.decode()
    assert '<option value="fakeness">' in datasets  # the training form offers its model task
    viewer = Client()
    viewer.force_login(make_member(org, "viewer"))
    assert viewer.get("/fake-product/").status_code == 403
    assert "Fake product" not in _nav(viewer.get("/dashboard/").content.decode())


@pytest.mark.django_db
def test_its_api_route_answers_under_api_with_its_permission_and_scope(make_org, make_member, make_key, api):
    org, owner = make_org()
    api.force_authenticate(owner)
    response = api.get("/api/fake-product/ping/")
    assert response.status_code == 200 and response.json() == {"organisation": org.pk, "pong": True}
    api.force_authenticate(make_member(org, "operator"))
    assert api.get("/api/fake-product/ping/").status_code == 403
    api.force_authenticate(None)
    _key, secret = make_key(org, scopes=("read",))
    assert api.get("/api/fake-product/ping/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 200
    _key, secret = make_key(org, scopes=("predict",))
    assert api.get("/api/fake-product/ping/", HTTP_AUTHORIZATION=f"Bearer {secret}").status_code == 403


@pytest.mark.django_db
def test_its_job_kind_runs(make_org):
    from core.jobs import services as jobs
    from core.jobs.handlers import job_kinds
    from core.jobs.models import TrainingJob

    org, _owner = make_org()
    assert "fake.ping" in job_kinds()
    job = jobs.job_create(organisation=org, kind="fake.ping", params={"n": 3}, app="fake_product")
    jobs.job_execute(job_id=job.pk)
    job = TrainingJob.objects.for_org(org).get(pk=job.pk)
    assert (job.status, job.result) == ("succeeded", {"pong": 3})


def test_its_beat_entry_is_in_the_schedule():
    from core.celery import app

    assert app.conf.beat_schedule["fake-product-tick"] == {
        "task": "fake_product.tick",
        "schedule": 30.0,
        "options": {"queue": "default"},
    }
    assert {"jobs-reap-stale", "registry-sweep-store", "customer-service-close-idle"} <= set(
        app.conf.beat_schedule
    )


@pytest.mark.django_db(transaction=True)
def test_its_websocket_route_is_served(make_org):
    from core.asgi import application

    _org, owner = make_org()
    client = Client()
    assert client.login(username=owner.email, password=PASSWORD)
    headers = [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://localhost"),
    ]

    async def scenario():
        socket = Socket(application, "/ws/fake/", headers=headers)
        connected, _ = await socket.connect()
        assert connected and await socket.receive_json_from(timeout=5) == {"type": "fake.hello"}
        await socket.disconnect()

    run_sockets(scenario)


def test_its_permissions_duties_and_model_tasks_join_cores():
    from core.registry.paths import app_for_task, model_apps, validate_app
    from core.tenancy.roles import role_can, role_descriptions, scope_descriptions

    assert role_can("admin", "fake.use") and not role_can("operator", "fake.use")
    assert role_descriptions()["operator"] == (
        "Live dashboards, the chat inbox, the finance monitor's document intake, the recommender's catalogue"
        " intake and the fake console; can run predictions."
    )
    assert "fake_product" in model_apps() and validate_app("fake_product") == "fake_product"
    # a scope it uses without a phrase for it: described by its permissions' names
    assert scope_descriptions()["read"].endswith("; Fake product: fake.use permissions")
    assert app_for_task("fakeness") == "fake_product"
