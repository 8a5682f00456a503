"""The support chatbot's reply latency over real websockets, with many visitors at once.

One production ASGI server (``uvicorn core.asgi:application``, one process, as ``bin/run-all`` starts it)
serves an organisation set up as a new customer's would be: the intent model trained by the product's own
path and defaults on the shipped Bitext set, the demo's answer templates and knowledge-base articles
(``customer_service.demo``). ``N`` visitors each open the widget's socket (``/ws/chat/<widget key>/``, with
an ``X-Forwarded-For`` of its own, as behind a load balancer), start a conversation and then, until the
level's time is up, send a question and wait for the bot's answer, then send the next one ``--think``
seconds later (0.2 s, the issue's load). Questions: Bitext requests of intents that have a template (the
text as a customer wrote it, not from the training split's wording only) and questions the articles answer.
A conversation the bot hands off is replaced by a new one (the bot is silent after a hand-off).

Latency: from sending the ``message`` frame to the bot's first ``message`` frame (the visitor's own echo
comes first and is not the answer). Reported per level, overall and by answer source (template, article),
with answers per second and the server process's CPU time per answer (from ``/proc``).

Two backends side by side: PostgreSQL + Redis (the channel layer, cache and broker; the production shape) and
the embedded default (SQLite, in-memory channel layer). The visitor throttle
(``CS_WIDGET_MESSAGES_PER_MINUTE``, 20 a minute per visitor) is lifted on the server: this load sends a
message every 0.2 s per visitor, which a real person does not.

    .venv/bin/python bench/chat_latency.py --visitors 1 10 50 --duration 30 --pool 0 20

``--deflate false true`` serves with websocket compression off (``bin/run-all``'s default) and on.
``--workers 1 2`` serves with one and with two uvicorn processes (``WEB_CONCURRENCY`` in ``bin/run-all``;
PostgreSQL + Redis only), and ``--peer-code DIR`` serves another code tree too (e.g. ``main`` exported with
``git archive``), on the same database, for a peer row measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ARTICLE_QUESTIONS = [  # answered by customer_service.demo.ARTICLES
    "Are your stores open on Sunday?",
    "What are your opening hours?",
    "How long is the warranty on a product?",
    "My item broke, can you repair it?",
    "How long is a gift card valid?",
    "Can I use a gift card for several purchases?",
    "How much does delivery cost?",
    "Do you deliver abroad?",
]


def parse_args() -> argparse.Namespace:
    from bench.common import add_launchers_argument

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per level")
    parser.add_argument(
        "--think", type=float, default=0.2, help="seconds between an answer and the next question"
    )
    parser.add_argument(
        "--backends", nargs="+", default=["postgres", "embedded"], choices=["postgres", "embedded"]
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/trellis_bench_chat")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/2")
    parser.add_argument(
        "--pool",
        type=int,
        nargs="+",
        default=[0],
        help="DB_POOL_MAX_SIZE of the server on PostgreSQL, one server per size (0: no pool)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[1],
        help="uvicorn processes (WEB_CONCURRENCY in bin/run-all), one server per count; >1 needs Redis",
    )
    add_launchers_argument(parser, "with more than one process, a server")
    parser.add_argument(
        "--deflate",
        nargs="+",
        default=["false"],
        choices=["false", "true"],
        help="websocket permessage-deflate (WS_PER_MESSAGE_DEFLATE in bin/run-all), one server per value",
    )
    parser.add_argument(
        "--peer-code",
        help="another code tree (e.g. main exported with git archive) served too, on the same database, one"
        " process, for a peer row in the same run",
    )
    parser.add_argument("--prepare", help=argparse.SUPPRESS)  # internal: set up the database, write JSON here
    return parser.parse_args()


def prepare(out: str) -> None:
    """In this process's settings (the environment): migrate, an organisation on the enterprise plan with the
    demo's bot (intent model, templates, articles); write the widget key and the questions to ``out``."""
    import django

    django.setup()
    from django.core.management import call_command

    from core.billing import services as billing
    from core.jobs import services as jobs
    from core.registry import services as registry
    from core.tenancy import services as tenancy
    from customer_service import demo, services

    call_command("migrate", verbosity=0)
    org, _ = tenancy.organisation_sign_up(
        organisation_name="Chat bench",
        email="chat-bench@example.com",
        password="bench-password-123",  # noqa: S106 - a throwaway bench database
    )
    billing.subscription_change_plan(organisation=org, plan_code="enterprise")
    dataset = registry.dataset_upload(
        organisation=org,
        name="bitext",
        task="classification",
        data=demo.bitext_dataset_csv(),
        filename="b.csv",
    )
    job = registry.model_train_start(
        organisation=org, dataset_id=dataset.pk, app=services.APP, task=services.INTENT_TASK, config=None
    )
    jobs.job_execute(job_id=job.pk)
    job.refresh_from_db()
    if job.status != "succeeded":
        raise SystemExit(f"the intent model did not train: {job.error}")
    for intent, body in demo.ANSWERS.items():
        services.template_save(organisation=org, intent=intent, body=body)
    for title, body in demo.ARTICLES:
        services.article_save(organisation=org, title=title, body=body)
    bot = services.bot_settings_for(organisation=org)
    reader = csv.DictReader(io.StringIO(demo.bitext_dataset_csv().decode()))
    questions = [row["text"] for row in reader if row["label"] in demo.ANSWERS]
    rng = random.Random(7)
    rng.shuffle(questions)
    Path(out).write_text(
        json.dumps(
            {"widget_key": bot.widget_key, "templates": questions[:400], "articles": ARTICLE_QUESTIONS}
        )
    )


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's worker processes)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            out += _tree(int(child))
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time of the server: the process and its workers (a worker's CPU counts while it lives)."""
    total = 0.0
    for one in _tree(pid):
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


async def visitor(
    index: int, url: str, questions: list[str], deadline: float, think: float, out: dict
) -> None:
    import websockets

    rng = random.Random(index)
    headers = {"Origin": "https://shop.example", "X-Forwarded-For": f"10.9.{index // 250}.{index % 250 + 1}"}
    async with websockets.connect(url, additional_headers=headers, max_size=2**20) as ws:

        async def start() -> None:
            await ws.send(json.dumps({"type": "start"}))
            while True:  # the conversation frame, then the greeting
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
                if frame["type"] == "message" and frame["data"]["sender"] == "bot":
                    return
                if frame["type"] == "error":
                    raise RuntimeError(frame["error"])

        await start()
        while time.monotonic() < deadline:
            text = rng.choice(questions)
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "message", "text": text}))
            while True:
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
                except TimeoutError:
                    out["errors"].append("no answer in 30 s")
                    await start()  # the bot is silent in this conversation: a new one
                    break
                if frame["type"] == "error":
                    out["errors"].append(frame["error"]["code"])
                    break
                if frame["type"] == "message" and frame["data"]["sender"] == "bot":
                    elapsed = time.perf_counter() - sent
                    source = frame["data"]["source"] or "other"
                    out["latencies"].setdefault(source, []).append(elapsed)
                    if source == "handoff":
                        await start()
                    break
            await asyncio.sleep(think)


def percentiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    n = len(values)
    if not n:
        return {}
    return {
        "n": n,
        "p50": 1000 * statistics.median(values),
        "p95": 1000 * values[min(n - 1, int(0.95 * n))],
        "p99": 1000 * values[min(n - 1, int(0.99 * n))],
    }


async def level(url: str, questions: list[str], visitors: int, duration: float, think: float) -> dict:
    out: dict = {"latencies": {}, "errors": []}
    deadline = time.monotonic() + duration
    started = time.perf_counter()
    results = await asyncio.gather(
        *(visitor(i, url, questions, deadline, think, out) for i in range(visitors)), return_exceptions=True
    )
    out["wall"] = time.perf_counter() - started
    out["failed"] = [repr(r) for r in results if isinstance(r, BaseException)]
    return out


def serve(
    env: dict[str, str], port: int, workers: int = 1, code: Path = ROOT, launcher: str = "core.serve"
) -> subprocess.Popen:
    """uvicorn as bin/run-all starts it, from the code tree ``code``, with ``workers`` processes; the
    visitors' X-Forwarded-For believed from this machine (TRUSTED_PROXIES=127.0.0.1), as from a load
    balancer."""
    import socket

    # bin/run-all's launcher where the tree has it (each connection to the least busy process), else uvicorn
    if not (code / "core" / "serve.py").exists():
        launcher = "uvicorn"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            launcher,
            "core.asgi:application",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--proxy-headers",
            "--forwarded-allow-ips",
            env["TRUSTED_PROXIES"],
            "--workers",
            str(workers),
            "--ws-per-message-deflate",  # as bin/run-all serves (WS_PER_MESSAGE_DEFLATE, off by default)
            env.get("WS_PER_MESSAGE_DEFLATE", "false"),
        ],
        cwd=code,
        env={**env, "PYTHONPATH": str(code)},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def serve_levels(
    name: str,
    env: dict[str, str],
    data: dict,
    questions: list[str],
    args,
    workers: int = 1,
    code: Path = ROOT,
    launcher: str = "core.serve",
) -> list[tuple]:
    from bench.http_serving import free_port

    port = free_port()
    proc = serve(env, port, workers, code, launcher)
    url = f"ws://127.0.0.1:{port}/ws/chat/{data['widget_key']}/"
    rows = []
    try:
        # warm: models loaded, connections open (in every worker: the kernel spreads the sockets)
        asyncio.run(level(url, questions, 2 * workers, 5.0 * workers, args.think))
        for visitors in args.visitors:
            cpu = cpu_seconds(proc.pid)
            result = asyncio.run(level(url, questions, visitors, args.duration, args.think))
            cpu = cpu_seconds(proc.pid) - cpu
            every = [x for values in result["latencies"].values() for x in values]
            answers = len(every)
            row = (
                name,
                visitors,
                answers / result["wall"],
                percentiles(every),
                {source: percentiles(values) for source, values in result["latencies"].items()},
                1000 * cpu / max(answers, 1),
                len(result["errors"]) + len(result["failed"]),
            )
            print(name, visitors, json.dumps(row[2:], default=str), result["failed"][:2], flush=True)
            rows.append(row)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # still closing sockets
            proc.kill()
            proc.wait()
    return rows


def run_backend(name: str, args: argparse.Namespace) -> list[tuple]:
    from bench.http_serving import ensure_database

    store = tempfile.mkdtemp(prefix=f"trellis-bench-chat-{name}-")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "core.settings",
            "TRELLIS_VAR_DIR": store,
            "HF_HUB_OFFLINE": "1",
            "ML_WARMUP": "1",
            "CS_WIDGET_MESSAGES_PER_MINUTE": "1000000",
            "CS_WIDGET_STARTS_PER_MINUTE": "1000000",
            "TRUSTED_PROXIES": "127.0.0.1",
        }
    )
    if name == "postgres":
        ensure_database(args.database_url)
        env.update({"DATABASE_URL": args.database_url, "REDIS_URL": args.redis_url})
    setup = Path(store) / "setup.json"
    subprocess.run([sys.executable, __file__, "--prepare", str(setup)], cwd=ROOT, env=env, check=True)
    data = json.loads(setup.read_text())
    questions = data["templates"] + data["articles"] * (len(data["templates"]) // (4 * len(data["articles"])))
    rows = []
    trees = [("", ROOT)] + ([(" (peer)", Path(args.peer_code))] if args.peer_code else [])
    for suffix, code in trees:
        for pool in args.pool if name == "postgres" else [0]:
            # more than one process only with Redis (the embedded channel layer does not cross processes)
            # and for this tree (the peer as it was served: one process)
            for workers in args.workers if name == "postgres" and not suffix else [1]:
                for launcher in args.launchers if workers > 1 else ["core.serve"]:
                    for deflate in args.deflate:
                        label = f"{name} pool {pool}" if pool else name
                        label += f"{f', {workers} workers' if workers > 1 else ''}"
                        label += f" ({launcher})" if workers > 1 and len(args.launchers) > 1 else ""
                        label += ", deflate" if deflate == "true" else ""
                        rows += serve_levels(
                            f"{label}{suffix}",
                            {**env, "DB_POOL_MAX_SIZE": str(pool), "WS_PER_MESSAGE_DEFLATE": deflate},
                            data,
                            questions,
                            args,
                            workers,
                            code,
                            launcher,
                        )
    return rows


def main() -> None:
    args = parse_args()
    if args.prepare:
        prepare(args.prepare)
        return
    from bench.common import machine_note

    rows = [row for backend in args.backends for row in run_backend(backend, args)]
    print()
    print(machine_note())
    columns = [
        "backend",
        "visitors",
        "answers/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "template p99",
        "article p99",
    ]
    print("| " + " | ".join([*columns, "CPU ms/answer", "errors"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, visitors, rate, every, by_source, cpu, errors in rows:
        template = by_source.get("template", {}).get("p99", float("nan"))
        article = by_source.get("article", {}).get("p99", float("nan"))
        print(
            f"| {name} | {visitors} | {rate:.1f} | {every.get('p50', 0):.0f} | {every.get('p95', 0):.0f} |"
            f" {every.get('p99', 0):.0f} | {template:.0f} | {article:.0f} | {cpu:.1f} | {errors} |"
        )


if __name__ == "__main__":
    main()
