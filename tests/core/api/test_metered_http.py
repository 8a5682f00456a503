"""Metered predictions over HTTP at the model's speed (core.api.fast_predict, core.billing.deferred), on a
real uvicorn with PostgreSQL and Redis: every answered prediction has its ledger lines, none twice, even
when the web process is killed with SIGKILL in the middle of the load."""

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from core.billing import flusher
from core.billing import services as billing
from core.billing.models import Plan, UsageCounter, UsageEvent, plan_limits_write
from tests.core.registry.trained import DATA, train_intent_model
from tests.worker import ROOT, _database_url, stop, wait_for

pytestmark = pytest.mark.skipif(
    not os.environ.get("REDIS_URL") or not os.environ.get("DATABASE_URL", "").startswith("postgres"),
    reason="the hot path runs on PostgreSQL and Redis",
)

TEXTS = [line.split(",")[0] for line in (DATA / "test_slice.csv").read_text().splitlines()[1:40]]


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server(port: int, log) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": _database_url(), "ML_SERVE_THREADS": "1", "ML_WARMUP": "0"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "core.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--timeout-keep-alive",  # the test's connection waits while it calls the full stack in process
            "60",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def up() -> bool:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"uvicorn exited early:\n{log.read()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_for(up, timeout=60, interval=0.2)
    return proc


def _post(conn: http.client.HTTPConnection, path: str, body: dict, headers: dict) -> tuple[int, dict, dict]:
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    payload = json.loads(response.read() or b"{}")
    return response.status, payload, {k.lower(): v for k, v in response.getheaders()}


class Load:
    """Clients sending one-text predictions back to back on keep-alive connections until stopped."""

    def __init__(self, port: int, path: str, secret: str, clients: int = 8) -> None:
        self.port, self.path, self.auth = port, path, {"Authorization": f"Bearer {secret}"}
        self.answered: list[str] = []  # request ids of 200 answers
        self.cut = 0  # requests sent whose answer never came (the server died under them)
        self.other: list[int] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(clients)]

    def run(self, index: int) -> None:
        conn, n = None, 0
        while not self.stop.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                try:
                    conn.connect()
                except OSError:  # the server is down: wait for it
                    conn = None
                    time.sleep(0.05)
                    continue
            text = TEXTS[(index * 7 + n) % len(TEXTS)]
            n += 1
            try:
                status, _body, headers = _post(conn, self.path, {"texts": [text]}, self.auth)
            except (OSError, http.client.HTTPException, ValueError):
                with self.lock:
                    self.cut += 1
                conn.close()
                conn = None
                continue
            with self.lock:
                if status == 200:
                    self.answered.append(headers["x-request-id"])
                else:
                    self.other.append(status)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def _lines(org, meter: str) -> list[UsageEvent]:
    return list(UsageEvent.objects.for_org(org).filter(meter=meter))


@pytest.mark.django_db(transaction=True)
def test_every_answered_prediction_is_in_the_ledger_once_when_the_web_process_is_killed(
    make_org, make_key, key_client, tmp_path
):
    org, _owner = make_org()
    Plan.objects.filter(code="enterprise").update(requests_per_minute=1_000_000)
    billing.subscription_change_plan(organisation=org, plan_code="enterprise")
    version = train_intent_model(org, tmp_path)
    _key, secret = make_key(org, scopes=("predict",))
    path = f"/api/models/{version.pk}/predict"
    port = _port()
    log = (tmp_path / "uvicorn.log").open("w+")
    first = _server(port, log)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        auth = {"Authorization": f"Bearer {secret}"}
        # The hot path's answer is the full stack's answer (in-process test client, same key and text).
        status, fast, headers = _post(conn, path, {"texts": [TEXTS[0]]}, auth)
        slow = key_client(secret).post(path, {"texts": [TEXTS[0]]}, format="json")
        assert status == 200 and "x-request-id" in headers and slow.status_code == 200
        assert fast["predictions"][0]["label"] == slow.json()["predictions"][0]["label"]
        assert set(fast) == set(slow.json()) and fast["model_version"] == version.pk
        # What the hot path does not serve goes to the full stack, which answers as it always has.
        status, body, headers = _post(conn, path, {"texts": []}, auth)
        assert status == 400 and body["error"]["code"] == "invalid" and "x-request-id" not in headers
        status, body, _ = _post(conn, path, {"texts": ["hi"]}, {"Authorization": "Bearer nope"})
        assert status in (401, 403) and body["error"]["message"] == "Invalid API key."
        replay_headers = {**auth, "Idempotency-Key": "once"}
        assert _post(conn, path, {"texts": ["hi"]}, replay_headers)[0] == 200
        assert _post(conn, path, {"texts": ["hi"]}, replay_headers)[2]["idempotent-replayed"] == "true"
        conn.close()

        with Load(port, path, secret) as load:
            wait_for(lambda: len(load.answered) >= 40, timeout=120)
            os.killpg(first.pid, signal.SIGKILL)  # mid-load: requests in flight, lines not yet flushed
            first.wait()
            before_kill = len(load.answered)
            second = _server(port, log)
            wait_for(lambda: len(load.answered) >= before_kill + 40, timeout=120)
        stop(second)
    finally:
        stop(first)
        log.close()
    flusher.ledger_drain()  # what a restarted flusher does with the killed process's pending lines

    assert not load.other, load.other
    predictions = _lines(org, "predictions")
    keys = [line.idempotency_key for line in predictions if line.idempotency_key]
    assert len(keys) == len(set(keys))  # nothing twice (the database would refuse it too)
    charged = {key.split(":")[1] for key in keys if key.startswith("req:")}
    answered = set(load.answered)
    assert len(answered) == len(load.answered) >= 80
    assert answered <= charged  # every answered prediction has its line
    # A line without an answer can only belong to a request the kill cut off after its line was written.
    assert len(charged - answered) <= load.cut
    api_calls = {
        line.idempotency_key.split(":")[1]
        for line in _lines(org, "api_calls")
        if (line.idempotency_key or "").startswith("req:")
    }
    # every hot-path request has its API-call line; the full stack's two answered calls (the test client's
    # and the first idempotent one) have theirs through the same stream
    assert charged <= api_calls and len(api_calls - charged) == 2
    counter = UsageCounter.objects.for_org(org).get(meter="predictions", period=billing.period_bounds()[2])
    assert counter.used == sum((line.quantity for line in predictions), Decimal(0))  # counted once


@pytest.mark.django_db(transaction=True)
def test_the_hot_path_refuses_past_the_quota_with_the_full_stacks_message(make_org, make_key, tmp_path):
    org, _owner = make_org()
    version = train_intent_model(org, tmp_path)
    _key, secret = make_key(org, scopes=("predict",))
    trial = Plan.objects.get(code="trial")
    billing.usage_record(organisation=org, meter="predictions", quantity=trial.predictions_per_month - 1)
    path, auth = f"/api/models/{version.pk}/predict", {"Authorization": f"Bearer {secret}"}
    port = _port()
    log = (tmp_path / "uvicorn.log").open("w+")
    server = _server(port, log)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        status, _body, headers = _post(conn, path, {"texts": ["my card has not arrived"]}, auth)
        assert status == 200 and "x-request-id" in headers
        status, body, headers = _post(conn, path, {"texts": ["where is my card"]}, auth)
        month = timezone.now().strftime("%Y-%m")
        limit = trial.predictions_per_month
        assert status == 402 and "x-request-id" not in headers
        assert (
            body["error"]["message"] == f"Your plan's {limit} predictions per month are used up for {month}."
        )
        assert body["error"]["details"]["meter"] == "predictions"
        plan_limits_write(trial.pk, {"predictions": limit + 5})  # seen by the server within its cache TTL
        time.sleep(1.2)
        assert _post(conn, path, {"texts": ["where is my card"]}, auth)[0] == 200
    finally:
        stop(server)
        log.close()
    out = io.StringIO()
    call_command("flush_ledger", claim_idle_ms=0, stdout=out)  # what an operator runs with no web process up
    written = int(out.getvalue().split()[0])  # what the server's own flusher had not written yet
    assert (
        out.getvalue() == f"{written} ledger lines written.\n" and 0 <= written <= 4
    )  # 2 answers, 2 lines each
    assert sum(line.quantity for line in _lines(org, "predictions")) == limit + 1
    assert settings.API_FAST_PREDICT and connection.vendor == "postgresql"
