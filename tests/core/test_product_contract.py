"""The product contract (core.products): the real products keep every URL, nav entry, permission and beat
entry they had, and a product that exists only in the tests plugs in with no core edit."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]


def _clean_env(tmp_path, **extra) -> dict[str, str]:
    """The embedded default (SQLite and a file broker under tmp_path): the subprocess shares no database."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    return env | {"TRELLIS_VAR_DIR": str(tmp_path), "ML_WARMUP": "0", **extra}


def test_a_product_only_in_the_tests_plugs_in_with_no_core_edit(tmp_path):
    """Its page (200 for a member), nav entry, dashboard card, API route, websocket route, job kind, beat
    entry, permission and model task, with the product added to INSTALLED_APPS by a settings module alone."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--ds=tests.core.fake_product.settings",
            "tests/core/fake_product/checks.py",
        ],
        cwd=ROOT,
        env=_clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b6 passed\b", result.stdout), result.stdout[-2000:]


def test_a_product_only_in_the_tests_declares_meters_that_are_listed_and_enforced(tmp_path):
    """Its meters, declared in its Product, reach the meter table, the plans, the usage page and API, and are
    enforced by ``core.billing.metered`` (tests/core/fake_product/checks_meters.py)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--ds=tests.core.fake_product.settings",
            "tests/core/fake_product/checks_meters.py",
        ],
        cwd=ROOT,
        env=_clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\b4 passed\b", result.stdout), result.stdout[-2000:]


BEAT = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
from celery.apps.beat import Beat
from celery.beat import Scheduler
from core.celery import app
Beat(app=app, quiet=True).init_loader()  # what `celery -A core beat` does before it schedules: sets up Django
print(json.dumps({name: [e.task, e.schedule.run_every.total_seconds(), e.options.get("queue")]
                  for name, e in Scheduler(app=app).schedule.items()}))
"""


@pytest.mark.parametrize(
    "settings_module, extra",
    [
        ("core.settings", {}),
        (
            "tests.core.fake_product.settings",
            {"fake-product-tick": ["fake_product.tick", 30.0, "default"]},
        ),
    ],
)
def test_celery_beat_schedules_core_and_product_entries(tmp_path, settings_module, extra):
    """Beat, started as `celery -A core beat` starts it (no Django set up before), sees products' entries."""
    env = _clean_env(tmp_path, DJANGO_SETTINGS_MODULE=settings_module)
    result = subprocess.run(
        [sys.executable, "-c", BEAT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    schedule = json.loads(result.stdout.strip().splitlines()[-1])
    assert schedule == {
        "jobs-reap-stale": ["jobs.reap_stale", 60.0, "default"],
        "billing-sweep-idempotency": ["billing.sweep_idempotency", 3600.0, "default"],
        "registry-sweep-store": ["registry.sweep_store", 3600.0, "default"],
        "privacy-sweep-exports": ["privacy.sweep_exports", 3600.0, "default"],
        "customer-service-close-idle": ["customer_service.close_idle", 900.0, "default"],
        "finance-monitor-poll-feeds": ["finance_monitor.poll_feeds", 60.0, "default"],
        "finance-monitor-evaluate-alerts": ["finance_monitor.evaluate_alerts", 300.0, "default"],
        "finance-monitor-classify-pending": ["finance_monitor.classify_pending", 300.0, "default"],
        "finance-monitor-replay": ["finance_monitor.replay_tick", 15.0, "default"],
        "finance-monitor-prune-near-copy-bands": [
            "finance_monitor.prune_near_copy_bands",
            86400.0,
            "default",
        ],
        "recommender-embed-pending": ["recommender.embed_pending", 300.0, "default"],
        "recommender-prune-impressions": ["recommender.prune_impressions", 86400.0, "default"],
        **extra,
    }


def test_permissions_scopes_and_role_descriptions_are_unchanged():
    from core.api.permissions import permission_scope
    from core.tenancy.models import Role
    from core.tenancy.roles import permission_roles, role_descriptions

    assert permission_roles("inbox.operate") == {Role.OWNER, Role.ADMIN, Role.OPERATOR}
    assert permission_roles("recommender.ingest") == {Role.OWNER, Role.ADMIN, Role.OPERATOR}
    assert (
        permission_scope("recommender.ingest") == "train"
        and permission_scope("recommender.manage") == "admin"
    )
    assert permission_scope("inbox.operate") == "admin" and permission_scope("models.predict") == "predict"
    assert role_descriptions() == {
        Role.OWNER: "Everything, including billing and the plan.",
        Role.ADMIN: "Members, API keys, datasets, training and promotion of models.",
        Role.OPERATOR: (
            "Live dashboards, the chat inbox, the finance monitor's document intake and the recommender's"
            " catalogue intake; can run predictions."
        ),
        Role.VIEWER: "Read-only access to dashboards, models and usage.",
    }
    with pytest.raises(KeyError):
        permission_roles("nope.nothing")


def test_scope_descriptions_say_what_each_scope_grants_in_the_products(client, make_org):
    from core.tenancy.roles import scope_descriptions

    assert scope_descriptions() == {
        "read": "Read organisation, usage, jobs and models",
        "predict": "Run predictions",
        "train": "Upload datasets and start training jobs; Finance monitor: push and upload documents,"
        " correct their topic or sentiment; Recommender: push and upload catalogue items and events",
        "admin": "Manage members and keys; Customer service: the chat inbox: conversations, take-overs,"
        " notes and saved replies; Finance monitor:"
        " feeds, watch-lists, alert rules and their webhook secrets; Recommender: experiments and event"
        " weights",
    }
    _, owner = make_org()
    client.force_login(owner)
    page = client.get("/keys/").content.decode()
    assert "Recommender: push and upload catalogue items and events" in page
    assert "alert rules and their webhook secrets" in page


def test_websocket_routes_come_from_the_products():
    from core.routing import public_websocket_urlpatterns, websocket_urlpatterns

    assert [str(p.pattern) for p in websocket_urlpatterns] == [
        "ws/jobs/",
        "ws/inbox/",
        "ws/finance-monitor/alerts/",
        "ws/finance-monitor/documents/",
    ]
    assert [str(p.pattern) for p in public_websocket_urlpatterns] == ["ws/chat/<str:widget_key>/"]


@pytest.mark.django_db
def test_navigation_and_dashboard_keep_their_order_and_labels(make_org):
    _org, owner = make_org()
    client = Client()
    client.force_login(owner)
    html = client.get("/dashboard/").content.decode()
    nav = re.search(r"<nav>(.*?)</nav>", html, re.S).group(1)
    assert re.findall(r'<a href="([^"]+)">([^<]+)</a>', nav) == [
        ("/dashboard/", "Dashboard"),
        ("/customer-service/", "Customer service"),
        ("/customer-service/analytics/", "Support analytics"),
        ("/finance-monitor/", "Finance monitor"),
        ("/recommender/", "Recommender"),
        ("/datasets/", "Datasets"),
        ("/models/", "Models"),
        ("/jobs/", "Jobs"),
        ("/usage/", "Usage"),
        ("/billing/", "Billing"),
        ("/members/", "Members"),
        ("/keys/", "API keys"),
        ("/api/docs/", "API"),
    ]
    cards = re.findall(r'<a class="card" href="([^"]+)"><h3>([^<]+)</h3><p>([^<]+)</p></a>', html)
    assert cards == [
        ("/customer-service/", "Customer service", "Support chatbot and operator inbox."),
        ("/finance-monitor/", "Finance monitor", "Topic and sentiment monitoring with alerts."),
        ("/recommender/", "Recommender", "Personalised top-k recommendations."),
    ]


def test_the_product_registry_refuses_a_conflicting_declaration():
    from django.core.exceptions import ImproperlyConfigured

    from core.products import Product, ProductPermission, product, register_product

    register_product(product("recommender"))  # the same declaration again: nothing changes
    for bad in (
        Product(name="recommender", display_name="Other", url_prefix="recommender"),  # declared twice
        Product(name="not_an_app", display_name="X", url_prefix="x"),
        Product(name="web", display_name="X", url_prefix="recommender"),  # a prefix taken by another product
        Product(name="web", display_name="X", url_prefix="api"),  # a prefix core serves
        Product(
            name="web",
            display_name="X",
            url_prefix="x",
            permissions=(ProductPermission("org.view", roles=frozenset(), scope=None),),  # core's
        ),
    ):
        with pytest.raises(ImproperlyConfigured):
            register_product(bad)
    assert product("recommender").display_name == "Recommender"
    # a text form: on a classifier task only, and under a name no other form has taken (else not registered)
    from core.ml.errors import MLError
    from core.ml.textforms import TextForm
    from core.products import ModelTask

    upper = TextForm("links-as-word", str.upper)  # the finance monitor's name, another function
    for task, error in (
        (ModelTask("pairs", kind="embedding", text_form=TextForm("lower", str.lower)), ImproperlyConfigured),
        (ModelTask("label", kind="classifier", text_form=upper), MLError),
    ):
        with pytest.raises(error):
            register_product(Product(name="web", display_name="X", url_prefix="x", model_tasks=(task,)))
        assert product("web") is None
