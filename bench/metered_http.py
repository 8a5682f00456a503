"""Metered predictions over HTTP beside their ceiling: /api/models/{id}/predict vs a bare ASGI endpoint.

Three servers, one uvicorn process each, on the same PostgreSQL database, Redis and model version (the
`head` model on the shipped BANKING77 slice, served as the API serves it):

- peer (the ceiling): ``bench/bare_predict.py``, the same online predictor behind a bare ASGI endpoint, no
  auth and no metering;
- Trellis, hot path (the default with Redis): ``core.api.fast_predict``: key from the per-process cache, rate
  limit and quotas in one Redis script, both ledger lines to the Redis stream, flushed in batches;
- Trellis, full stack (``API_FAST_PREDICT=0``, how every call was served before): Django, DRF, the key
  lookup, the rate limit and quota checks and two ledger writes in the database per request.

Clients are threads with keep-alive connections on the same machine, one text per request, back to back
(``bench/http_serving.py``'s client), in rounds that take the servers in turn, so that the load other
programs put on the machine falls on all of them alike. After the runs the ledger is drained and checked:
one predictions line and one API-call line per answered request, none twice.

``--ledger-flusher thread process`` runs a hot-path server for each way of writing its ledger lines
(``LEDGER_FLUSHER``): a thread in the web process (the default), or a process of its own (``manage.py
flush_ledger --follow``, started beside the servers).

    .venv/bin/python bench/metered_http.py --concurrency 1 8 --requests 400 --rounds 4
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_note  # noqa: E402
from bench.http_serving import (  # noqa: E402
    Client,
    ensure_database,
    free_port,
    prepare,
    read_rows,
    start_server,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/trellis_bench_metered")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=400, help="requests per server and round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, each server in turn")
    parser.add_argument("--serve-threads", type=int, default=1)
    parser.add_argument(
        "--ledger-flusher",
        choices=["thread", "process"],
        nargs="+",
        default=["thread"],
        help="who writes the hot path's ledger lines (LEDGER_FLUSHER): a hot-path server for each "
        "(default: %(default)s)",
    )
    return parser.parse_args()


def serve_app(env: dict[str, str], port: int, app: str):
    """``start_server`` (which waits for the port), for any ASGI application."""
    import socket
    import subprocess
    import time

    if app == "core.asgi:application":
        return start_server(env, port)
    command = [sys.executable, "-m", "uvicorn", app, "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{app} did not start")


def load_round(port: int, secret: str, version_id: int, rows, concurrency: int, total: int) -> dict:
    """``total`` one-text requests from ``concurrency`` keep-alive clients: latencies, wall time, errors."""
    import threading
    import time

    per_client = total // concurrency
    clients = [Client(port, secret, version_id) for _ in range(concurrency)]
    for client in clients:  # connection set up, model loaded
        client.predict(rows[0][0])
    latencies: list[float] = []
    errors, correct = [0], [0]
    lock = threading.Lock()
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
                errors[0] += status != 200
                correct[0] += label == gold

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return {
        "latencies": latencies,
        "wall": time.perf_counter() - start,
        "errors": errors[0],
        "correct": correct[0],
        "answered": per_client * concurrency + concurrency - errors[0],
    }


def summary(rounds: list[dict]) -> dict:
    latencies = sorted(x for r in rounds for x in r["latencies"])
    n = len(latencies)
    return {
        "texts_per_s": n / sum(r["wall"] for r in rounds),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(n - 1, int(0.99 * n))],
        "accuracy": sum(r["correct"] for r in rounds) / n,
        "errors": sum(r["errors"] for r in rounds),
        "answered": sum(r["answered"] for r in rounds),
    }


def main() -> None:
    args = parse_args()
    ensure_database(args.database_url)
    store = tempfile.mkdtemp(prefix="trellis-bench-metered-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "core.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "TRELLIS_VAR_DIR": store,
        "HF_HUB_OFFLINE": "1",
        "ML_SERVE_THREADS": str(args.serve_threads),
        "ML_WARMUP": "0",
    }
    version_id, secret = prepare(env)
    from core.billing import flusher
    from core.billing.models import UsageEvent
    from core.registry.models import ModelVersion

    version = ModelVersion.all_tenants.get(pk=version_id)
    rows = read_rows("test_slice.csv")
    hot_paths = [
        (
            f"Trellis hot path (fast_predict, Redis-metered, flusher {mode})",
            "core.asgi:application",
            {"API_FAST_PREDICT": "1", "LEDGER_FLUSHER": mode},
        )
        for mode in args.ledger_flusher
    ]
    servers = [
        ("peer: bare ASGI endpoint, no auth or metering", "bench.bare_predict:application", {}),
        *hot_paths,
        ("Trellis full stack (API_FAST_PREDICT=0)", "core.asgi:application", {"API_FAST_PREDICT": "0"}),
    ]
    started, flusher_proc = [], None
    try:
        if "process" in args.ledger_flusher:  # the flusher of LEDGER_FLUSHER=process, beside the servers
            import subprocess

            flusher_proc = subprocess.Popen(
                [sys.executable, "manage.py", "flush_ledger", "--follow"],
                cwd=ROOT,
                env={**env, "LEDGER_FLUSHER": "process"},
            )
        for name, app, extra in servers:
            port = free_port()
            started.append(
                (name, port, serve_app({**env, **extra, "BARE_VERSION_ID": str(version_id)}, port, app))
            )
        results, answered = [], {}
        for concurrency in args.concurrency:
            rounds: dict[str, list[dict]] = {name: [] for name, _port, _proc in started}
            for _round in range(args.rounds):  # interleaved: the machine's drift falls on every server alike
                for name, port, _proc in started:
                    rounds[name].append(
                        load_round(port, secret, version_id, rows, concurrency, args.requests)
                    )
            for name, _port, _proc in started:
                stats = summary(rounds[name])
                answered[name] = answered.get(name, 0) + stats["answered"]
                results.append((name, concurrency, stats))
                print(name, concurrency, {k: round(v, 3) for k, v in stats.items()}, flush=True)
    finally:
        for _name, _port, proc in started:
            proc.terminate()
            proc.wait(timeout=30)
        if flusher_proc is not None:
            flusher_proc.terminate()
            flusher_proc.wait(timeout=30)
    flusher.ledger_drain()
    lines = UsageEvent.all_tenants.filter(organisation_id=version.organisation_id)
    keys = [k for k in lines.values_list("idempotency_key", flat=True) if k]
    hot = lines.filter(meter="predictions", idempotency_key__startswith="req:").count()
    full = lines.filter(meter="predictions", idempotency_key__isnull=True).count()
    hot_answered = sum(answered[name] for name, _app, _extra in hot_paths)
    print(
        f"\nledger: {hot} predictions lines from the hot path for {hot_answered} answers, {full} from"
        f" the full stack for {answered[servers[-1][0]]}; duplicate keys: {len(keys) - len(set(keys))}"
    )
    ceiling = {c: s["texts_per_s"] for n, c, s in results if n == servers[0][0]}
    print("\n| server | concurrent clients | predictions/s | p50 ms | p99 ms | of the peer | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, concurrency, s in results:
        ratio = s["texts_per_s"] / ceiling[concurrency]
        print(
            f"| {name} | {concurrency} | {s['texts_per_s']:.0f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} "
            f"| {100 * ratio:.0f}% | {s['errors']} |"
        )
    print(machine_note())


if __name__ == "__main__":
    main()
