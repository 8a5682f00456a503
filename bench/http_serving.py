"""HTTP serving benchmark: /api/models/{id}/predict under concurrent clients, micro-batched vs not.

Starts the real ASGI app (uvicorn, one process) once per configuration on the same database and model
version: the version served in float32 without micro-batching (the peer: each request runs its own forward
pass), in float32 micro-batched (ML_MICROBATCH_MAX=64) with no wait (requests that arrive while a forward pass
runs join the next one) and with a 2 ms wait, and in int8 (what a version that passes the gate serves: each
text alone, no batcher). Each request is authenticated, rate-limited, quota-checked and
metered, as in production. Clients are threads with keep-alive connections, each sending single-text requests
back to back; reports texts/s, p50/p99 latency and the accuracy of the returned labels for each concurrency.

The model: the `head` method on the shipped BANKING77 slice (8 intents, CC BY 4.0); texts: the shipped test
slice, cycled. Needs PostgreSQL (concurrent writers), by default postgres://postgres@127.0.0.1:5432/trellis_bench.

    .venv/bin/python bench/http_serving.py --concurrency 1 8 32 --requests 400
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_note  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/trellis_bench")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--requests", type=int, default=400, help="requests per concurrency level")
    parser.add_argument("--serve-threads", type=int, default=1)
    return parser.parse_args()


def read_rows(name: str) -> list[tuple[str, str]]:
    with (ROOT / "data" / "banking77" / name).open(encoding="utf-8", newline="") as handle:
        return [(row["text"], row["category"]) for row in csv.DictReader(handle)]


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def prepare(env: dict[str, str]) -> tuple[int, str]:
    """Migrate, make an enterprise organisation with a predict key, train a version: (version id, secret)."""
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    from core.billing import services as billing
    from core.billing.models import Plan
    from core.registry.models import ModelVersion
    from core.tenancy import services as tenancy

    call_command("migrate", verbosity=0)
    # The benchmark measures serving, not the plan's rate limit: lift it for this throwaway database.
    Plan.objects.filter(code="enterprise").update(requests_per_minute=1_000_000)
    org, _ = tenancy.organisation_sign_up(
        organisation_name="Bench",
        email="bench@example.com",
        password="bench-password-123",  # noqa: S106 - a throwaway bench database
    )
    billing.subscription_change_plan(organisation=org, plan_code="enterprise")
    _, secret = tenancy.api_key_create(organisation=org, created_by=None, name="bench", scopes=["predict"])
    train_file = Path(env["TRELLIS_VAR_DIR"]) / "train.csv"
    with train_file.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([("text", "label"), *read_rows("train_slice.csv")])
    call_command("train", org=org.slug, app="customer_service", task="intent", file=train_file, method="head")
    return ModelVersion.objects.for_org(org).get().pk, secret


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "core.asgi:application", "--port", str(port)]
        + ["--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("uvicorn did not start")


class Client:
    def __init__(self, port: int, secret: str, version_id: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.path = f"/api/models/{version_id}/predict"
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

    def predict(self, text: str) -> tuple[int, str]:
        self.conn.request("POST", self.path, json.dumps({"texts": [text]}), self.headers)
        response = self.conn.getresponse()
        body = response.read()
        label = json.loads(body)["predictions"][0]["label"] if response.status == 200 else ""
        return response.status, label


def load(port: int, secret: str, version_id: int, rows, concurrency: int, total: int) -> dict:
    latencies: list[float] = []
    errors: list[int] = []
    correct = [0]
    lock = threading.Lock()
    per_client = total // concurrency
    clients = [Client(port, secret, version_id) for _ in range(concurrency)]
    for client in clients:  # warm-up: connection, model load, trace
        client.predict(rows[0][0])
    barrier = threading.Barrier(concurrency + 1)

    def run(index: int, client: Client) -> None:
        barrier.wait()
        for i in range(per_client):
            text, gold = rows[(index * per_client + i) % len(rows)]
            start = time.perf_counter()
            status, label = client.predict(text)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                if status != 200:
                    errors.append(status)
                correct[0] += label == gold

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {
        "texts_per_s": n / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))],
        "accuracy": correct[0] / n,
        "errors": len(errors),
    }


def main() -> None:
    args = parse_args()
    ensure_database(args.database_url)
    store = tempfile.mkdtemp(prefix="trellis-bench-http-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "core.settings",
        "DATABASE_URL": args.database_url,
        "TRELLIS_VAR_DIR": store,
        "HF_HUB_OFFLINE": "1",
        "ML_SERVE_THREADS": str(args.serve_threads),
    }
    version_id, secret = prepare(env)
    rows = read_rows("test_slice.csv")
    results = []
    from core.registry.models import ModelVersion

    configs = [
        ("peer: float32, no micro-batching", False, "1", "0"),
        ("float32, micro-batched, no wait", False, "64", "0"),
        ("float32, micro-batched, 2 ms wait", False, "64", "2"),
        ("int8 (each text alone)", True, "64", "0"),
    ]
    for name, quantized, max_batch, wait_ms in configs:
        ModelVersion.all_tenants.filter(pk=version_id).update(quantized=quantized)
        port = free_port()
        server = start_server({**env, "ML_MICROBATCH_MAX": max_batch, "ML_MICROBATCH_WAIT_MS": wait_ms}, port)
        try:
            for concurrency in args.concurrency:
                stats = load(port, secret, version_id, rows, concurrency, args.requests)
                results.append((name, concurrency, stats))
                print(name, concurrency, {k: round(v, 3) for k, v in stats.items()}, flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print("\n| server | concurrent clients | texts/s | p50 ms | p99 ms | accuracy | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, concurrency, s in results:
        print(
            f"| {name} | {concurrency} | {s['texts_per_s']:.0f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} "
            f"| {100 * s['accuracy']:.2f}% | {s['errors']} |"
        )
    print(machine_note())


if __name__ == "__main__":
    main()
