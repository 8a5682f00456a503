"""The garbage collector's pauses in a serving process, with start-up's objects frozen (``GC_FREEZE=1``, the
default: ``core.heap``) and without (``GC_FREEZE=0``, how every process ran before), side by side.

Two servers, one uvicorn process each (``bench.gc_probe``: the product's ASGI application, which also
answers its collections since it was last asked), on the same PostgreSQL database, Redis and model version
(the ``head`` model on the shipped BANKING77 slice). The load is ``bench/metered_http.py``'s (keep-alive
clients, one text per request, back to back), on the full stack (``API_FAST_PREDICT=0``: Django, DRF, the
key, throttle, quota and ledger steps; the path that makes the most objects per request) unless ``--fast-
predict``; rounds take the servers in turn. Printed per server: requests/s, latency p50/p99/p99.9/max, and
the process's collections during the load by generation (count, total and longest pause).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/gc_pauses.py --concurrency 8 --requests 1000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_note  # noqa: E402
from bench.http_serving import ensure_database, free_port, prepare, read_rows  # noqa: E402
from bench.metered_http import load_round, serve_app  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/trellis_bench_gc")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=1000, help="requests per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--fast-predict", action="store_true", help="load the hot path (API_FAST_PREDICT=1) instead"
    )
    return parser.parse_args()


def pauses(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/__gc", timeout=30) as answer:
        return json.loads(answer.read())


def main() -> None:
    args = parse_args()
    ensure_database(args.database_url)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "core.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "TRELLIS_VAR_DIR": tempfile.mkdtemp(prefix="trellis-bench-gc-"),
        "HF_HUB_OFFLINE": "1",
        "ML_SERVE_THREADS": "1",
        "ML_WARMUP": "1",  # as production starts: the model loaded (then frozen) before the first request
        "API_FAST_PREDICT": "1" if args.fast_predict else "0",
    }
    version_id, secret = prepare(env)
    rows = read_rows("test_slice.csv")
    servers = [
        ("GC_FREEZE=0 (before: every object collected)", {"GC_FREEZE": "0"}),
        ("GC_FREEZE=1 (start-up's objects frozen)", {"GC_FREEZE": "1"}),
    ]
    started = []
    try:
        for name, extra in servers:
            port = free_port()
            started.append((name, port, serve_app({**env, **extra}, port, "bench.gc_probe:application")))
        rounds: dict[str, list[dict]] = {name: [] for name, _port, _proc in started}
        collected: dict[str, dict[str, dict[str, float]]] = {}
        frozen: dict[str, int] = {}
        for _round in range(args.rounds):
            for name, port, _proc in started:
                pauses(port)  # the counts start here
                load = load_round(port, secret, version_id, rows, args.concurrency, args.requests)
                rounds[name].append(load)
                after = pauses(port)
                frozen[name] = after["frozen"]
                for generation, entry in after["pauses"].items():
                    total = collected.setdefault(name, {}).setdefault(
                        generation, {"count": 0, "total_ms": 0.0, "max_ms": 0.0}
                    )
                    total["count"] += entry["count"]
                    total["total_ms"] += entry["total_ms"]
                    total["max_ms"] = max(total["max_ms"], entry["max_ms"])
    finally:
        for _name, _port, proc in started:
            proc.terminate()
            proc.wait(timeout=30)
    path = "hot path (API_FAST_PREDICT=1)" if args.fast_predict else "full stack (API_FAST_PREDICT=0)"
    each = f"{args.rounds} rounds of {args.requests} requests per server"
    print(f"\n{path}, {args.concurrency} clients, {each}")
    print(
        "| server | objects frozen | requests/s | p50 ms | p99 ms | p99.9 ms | max ms | errors "
        "| full collections (gen 2): count, total ms, longest ms | gen 0+1: count, total ms, longest ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, _port, _proc in started:
        latencies = sorted(x for r in rounds[name] for x in r["latencies"])
        n = len(latencies)
        wall = sum(r["wall"] for r in rounds[name])
        errors = sum(r["errors"] for r in rounds[name])

        def at(q: float, latencies=latencies, n=n) -> float:
            return 1000 * latencies[min(n - 1, int(q * n))]

        full = collected[name]["2"]
        young = [collected[name]["0"], collected[name]["1"]]
        print(
            f"| {name} | {frozen[name]:,} | {n / wall:.0f} | {1000 * statistics.median(latencies):.1f} "
            f"| {at(0.99):.1f} | {at(0.999):.1f} | {1000 * latencies[-1]:.1f} | {errors} "
            f"| {full['count']}, {full['total_ms']:.0f}, {full['max_ms']:.0f} "
            f"| {sum(y['count'] for y in young)}, {sum(y['total_ms'] for y in young):.0f}, "
            f"{max(y['max_ms'] for y in young):.1f} |"
        )
    print(machine_note())


if __name__ == "__main__":
    main()
