"""Shared fixtures: organisations with owners, API keys, clients, and a real Celery worker."""

import faulthandler
import itertools
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Models load on demand in the tests and in the servers and workers they start (a test turns warm-up on).
os.environ.setdefault("ML_WARMUP", "0")
# Feeds and webhooks in the tests are served on 127.0.0.1, which the outbound guard refuses by default
# (core.outbound); the servers and workers the tests start inherit this. test_outbound.py turns it off.
os.environ.setdefault("OUTBOUND_ALLOW_NETWORKS", "127.0.0.0/8")
# Versions that pass their int8 gate serve int8 in the tests on every machine, on the float32 kernel (the same
# answers as torch's int8 kernel, which is fifty times slower on CPUs without VNNI); `auto`, which serves the
# float model where int8 is not faster, is tested in tests/core/api/test_online_batching.py.
os.environ.setdefault("ML_INT8_KERNEL", "float")
# Models and datasets the tests write go to a folder of this run, not to the checkout's var/: the tests'
# first organisation has id 1 like `make run`'s demo organisation, and its models would replace the demo's
# (a test store path is the same organisation/app/task/version as the demo's). Servers and workers inherit it.
_STORE = tempfile.mkdtemp(prefix="trellis-test-store-")
os.environ.setdefault("MODEL_STORE", f"{_STORE}/models")
os.environ.setdefault("DATASET_STORE", f"{_STORE}/datasets")

import environ  # noqa: E402
import pytest  # noqa: E402
from django.conf import settings  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from core.tenancy import services as tenancy  # noqa: E402
from core.tenancy.models import Role  # noqa: E402

settings.ML_WARMUP = environ.Env().bool("ML_WARMUP")  # pytest-django read the settings before this file
settings.OUTBOUND_ALLOW_NETWORKS = environ.Env().list("OUTBOUND_ALLOW_NETWORKS")
settings.ML_INT8_KERNEL = os.environ["ML_INT8_KERNEL"]
settings.MODEL_STORE = Path(os.environ["MODEL_STORE"])
settings.DATASET_STORE = Path(os.environ["DATASET_STORE"])
# Passwords hashed with one PBKDF2 iteration (tests/hashers.py); the default hashers still verify them.
settings.PASSWORD_HASHERS = ["tests.hashers.OneIterationPBKDF2PasswordHasher", *settings.PASSWORD_HASHERS]

_counter = itertools.count(1)
PASSWORD = "correct-horse-battery-9"

# A thread left stuck by a test (a hung event loop: tests/sockets.py says how one happened) kept the
# interpreter from exiting after pytest had printed its summary, and CI waited out its 90 minutes on a
# finished run. (tests/test_exit_watchdog.py sets a shorter wait to see it work.)
EXIT_WATCHDOG_S = float(os.environ.get("TEST_EXIT_WATCHDOG_S", "120"))
_exit_status = {"code": 0}


def pytest_sessionfinish(session, exitstatus):
    _exit_status["code"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """After everything pytest prints: if the interpreter has not exited ``EXIT_WATCHDOG_S`` later (it joins
    every non-daemon thread first), print every thread's stack and exit with pytest's own status."""

    def watchdog():
        time.sleep(EXIT_WATCHDOG_S)
        sys.stderr.write(f"\nThe run ended but a thread kept the process alive for {EXIT_WATCHDOG_S} s:\n")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        sys.stderr.flush()
        os._exit(_exit_status["code"])

    threading.Thread(target=watchdog, name="exit-watchdog", daemon=True).start()


@pytest.fixture(autouse=True)
def _ledger_flusher_stopped_before_the_database_is_emptied(_django_db_marker):
    """A request through the ledger stream starts this process's flusher thread (as in a web process). Set
    up after pytest-django's database fixture, this is torn down before it: the thread is stopped before a
    transactional test's ``TRUNCATE``, with which its writes deadlock. Lines left in the stream are written by
    the next flusher or drain."""
    yield
    from core.billing import flusher

    flusher.flusher_stop(timeout=30)


def _ensure_plans() -> None:
    """Transactional tests truncate tables, seeded plans included: put them back."""
    import importlib

    from django.apps import apps

    importlib.import_module("core.billing.migrations.0003_seed_plans").seed(apps, None)


@pytest.fixture
def make_org(db):
    """make_org(name=None) -> (organisation, owner)."""
    _ensure_plans()

    def make(name: str | None = None):
        n = next(_counter)
        return tenancy.organisation_sign_up(
            organisation_name=name or f"Org {n}", email=f"owner{n}@example.com", password=PASSWORD
        )

    return make


@pytest.fixture
def make_member(db):
    def make(organisation, role: str = Role.VIEWER):
        from core.tenancy.models import Membership, User

        n = next(_counter)
        user = User.objects.create_user(
            username=f"m{n}@example.com", email=f"m{n}@example.com", password=PASSWORD
        )
        Membership.all_tenants.create(organisation=organisation, user=user, role=role)
        return user

    return make


@pytest.fixture
def make_key(db):
    def make(organisation, scopes=("read",), **kwargs):
        key, secret = tenancy.api_key_create(
            organisation=organisation,
            created_by=None,
            name=f"key {next(_counter)}",
            scopes=list(scopes),
            **kwargs,
        )
        return key, secret

    return make


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def key_client():
    def make(secret: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
        return client

    return make


@pytest.fixture
def user_client():
    def make(user) -> APIClient:
        client = APIClient()
        client.force_login(user)
        return client

    return make


def logged_in_client(user):
    """A page client logged in as ``user`` (the password every test user has)."""
    from django.test import Client

    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def flash_text(response) -> str:
    """The flash messages a followed page response carries, as one string."""
    return " ".join(str(m) for m in response.context["messages"])
