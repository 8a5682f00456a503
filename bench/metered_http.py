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
(``bench/http_serving.py``'s load). After the runs the ledger is drained and checked: one predictions line
and one API-call line per answered request, none twice.

    .venv/bin/python bench/metered_http.py --concurrency 1 8 --requests 1600
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_note  # noqa: E402
from bench.http_serving import ensure_database, free_port, load, prepare, read_rows, start_server  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/trellis_bench_metered")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--requests", type=int, default=1600, help="requests per concurrency level")
    parser.add_argument("--serve-threads", type=int, default=1)
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
    from core.billing import deferred
    from core.billing.models import UsageEvent
    from core.registry.models import ModelVersion

    version = ModelVersion.all_tenants.get(pk=version_id)
    rows = read_rows("test_slice.csv")
    servers = [
        ("peer: bare ASGI endpoint, no auth or metering", "bench.bare_predict:application", {}),
        (
            "Trellis hot path (fast_predict, Redis-metered)",
            "core.asgi:application",
            {"API_FAST_PREDICT": "1"},
        ),
        ("Trellis full stack (API_FAST_PREDICT=0)", "core.asgi:application", {"API_FAST_PREDICT": "0"}),
    ]
    results, answered = [], {}
    for name, app, extra in servers:
        port = free_port()
        server = serve_app({**env, **extra, "BARE_VERSION_ID": str(version_id)}, port, app)
        try:
            for concurrency in args.concurrency:
                stats = load(port, secret, version_id, rows, concurrency, args.requests)
                results.append((name, concurrency, stats))
                served = (args.requests // concurrency) * concurrency + concurrency  # the load's warm-ups too
                answered[name] = answered.get(name, 0) + served - stats["errors"]
                print(name, concurrency, {k: round(v, 3) for k, v in stats.items()}, flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
    deferred.ledger_drain()
    lines = UsageEvent.all_tenants.filter(organisation_id=version.organisation_id)
    keys = [k for k in lines.values_list("idempotency_key", flat=True) if k]
    hot = lines.filter(meter="predictions", idempotency_key__startswith="req:").count()
    full = lines.filter(meter="predictions", idempotency_key__isnull=True).count()
    metered = [name for name, app, _ in servers if app == "core.asgi:application"]
    print(
        f"\nledger: {hot} predictions lines from the hot path for {answered[metered[0]]} answers, {full} from"
        f" the full stack for {answered[metered[1]]}; duplicate keys: {len(keys) - len(set(keys))}"
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
