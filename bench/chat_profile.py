"""What one visitor message costs the server, in process: CPU ms, SQL statements and channel-layer group
sends per message, by answer type (template, article, hand-off), beside a peer code tree in the same run.

The server-side work of one ``message`` frame as ``customer_service.consumers.ChatConsumer`` runs it: the
widget key and origin checked (``bot_for_widget``), the visitor throttle (``widget_throttle``), the message
stored and its payload (``visitor_message_store``), then the answer worked out and its payloads
(``visitor_message_answer``), each message in a new conversation (its start is not counted). The database
and the channel layer are the production shape (PostgreSQL + Redis: every broadcast is a real group send),
set up once as ``bench/chat_latency.py`` sets it up (the product's default intent model trained on the
shipped Bitext set, the demo's templates and articles). The peer is another code tree on the same database
and model store: by default where this branch left ``main`` (``git merge-base HEAD main``) exported with
``git archive`` (``--peer-ref`` names another ref), or ``--peer-code PATH``.
``--steps REF ...`` measures commits between the two as well (a row each: what each change adds).
Each tree is measured in its own process, the two alternating in rounds so that the machine's load falls on
both alike. Torch runs one thread, as a serving process does (``ML_SERVE_THREADS``).

    .venv/bin/python bench/chat_profile.py --messages 20 --rounds 2 \
      --database-url postgres://postgres@127.0.0.1:5432/trellis_chatlat_bench --redis-url redis://127.0.0.1:6379/9
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HANDOFF_QUESTIONS = [
    "Can I talk to a human please?",
    "I want to speak to a real person",
    "Let me chat with an agent",
    "I need a representative now",
]
TYPES = ("template", "article", "handoff")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages", type=int, default=20, help="measured messages per answer type and round"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a serving process: 1)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/trellis_chatlat_bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    parser.add_argument(
        "--peer-ref",
        help="git ref exported as the peer (unless --peer-code); default: where this branch left main"
        " (git merge-base HEAD main), so that the peer differs by this branch's changes alone",
    )
    parser.add_argument(
        "--peer-code", help="a code tree to measure as the peer (default: --peer-ref exported)"
    )
    parser.add_argument(
        "--steps",
        nargs="*",
        default=[],
        help="commits measured too, between the peer and this tree (a row each)",
    )
    parser.add_argument(
        "--var", help="the bench's folder (database set-up and models): reused when it has one"
    )
    parser.add_argument(
        "--show-sql", action="store_true", help="print the SQL of one message of each type, for each tree"
    )
    parser.add_argument(
        "--profile", help="write a cProfile (CPU clock) of this tree's measured messages here (last round)"
    )
    parser.add_argument("--kinds", nargs="+", choices=TYPES, help="only these kinds of question")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: JSON job for one code tree
    return parser.parse_args()


def export_peer(ref: str) -> Path:
    """``ref`` as a plain tree (``git archive``), with this tree's virtualenv beside it."""
    target = Path(tempfile.mkdtemp(prefix="trellis-peer-"))
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


# --- one code tree, in its own process ------------------------------------------------------------------


def measure(job: dict) -> dict:
    """Run ``job["messages"]`` messages of each type through the code tree ``job["code"]``."""
    sys.path.insert(0, job["code"])
    os.chdir(job["code"])
    import torch

    torch.set_num_threads(job["threads"])
    import django

    django.setup()
    from channels.layers import get_channel_layer
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from customer_service import services
    from customer_service.models import BotSettings

    layer = get_channel_layer()
    sends = [0]
    real_send = layer.group_send

    async def counted_send(group, message):
        sends[0] += 1
        return await real_send(group, message)

    layer.group_send = counted_send  # the one layer instance every broadcast uses
    bot = BotSettings.all_tenants.get(widget_key=job["widget_key"])
    origin, host = "https://shop.example", "127.0.0.1:8000"
    shown: set[str] = set()
    # the consumer hands the answer the settings it read for the frame, where the tree's service takes them
    pass_bot = "bot" in inspect.signature(services.visitor_message_answer).parameters
    # and checks the key for every frame with the bot it knows, where the tree's check takes it (the settings
    # then come from the per-process cache)
    pass_known = "known" in inspect.signature(services.bot_for_widget).parameters

    def one(text: str, n: int) -> tuple[str, float, float, int, int]:
        conversation, _token, _greeting = services.conversation_start(bot=bot, visitor=f"profile-{n:08d}")
        sends[0] = 0
        with CaptureQueriesContext(connection) as queries:
            cpu, wall = time.process_time(), time.perf_counter()
            checked = services.bot_for_widget(
                widget_key=bot.widget_key, origin=origin, host=host, **({"known": bot} if pass_known else {})
            )
            services.widget_throttle(
                widget_key=checked.widget_key, client=f"10.1.{n % 250}.1", kind="message"
            )
            stored, bot_has_it = services.visitor_message_store(
                conversation=conversation, text=text, client_id=f"c{n}"
            )
            services.message_payload(stored)
            answers = (
                [
                    services.message_payload(a)
                    for a in services.visitor_message_answer(
                        conversation=conversation, message=stored, **({"bot": checked} if pass_bot else {})
                    )
                ]
                if bot_has_it
                else []
            )
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        source = answers[0]["source"] if answers else "none"
        if job["show_sql"] and source not in shown:
            shown.add(source)
            print(f"--- {job['code']}: {source} ({text!r})")
            print("\n".join(f"{i + 1:3d} {q['sql'][:300]}" for i, q in enumerate(queries.captured_queries)))
        return source, 1000 * cpu, 1000 * wall, len(queries.captured_queries), sends[0]

    questions = {kind: job["questions"][kind] for kind in TYPES}
    n = job["offset"]
    for kind in TYPES:  # load the models, warm the caches
        for text in questions[kind][:3]:
            n += 1
            one(text, n)
    out: dict = {}
    profiler = None
    if job.get("profile"):
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time: where the server's CPU goes
        profiler.enable()
    for i in range(job["messages"]):
        for kind in job.get("kinds") or TYPES:
            n += 1
            source, cpu, wall, sql, sent = one(questions[kind][i % len(questions[kind])], n)
            out.setdefault(source, []).append((cpu, wall, sql, sent))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(job["profile"])
    return out


# --- the run --------------------------------------------------------------------------------------------


def prepare(env: dict[str, str]) -> dict:
    from bench.http_serving import ensure_database

    setup = Path(env["TRELLIS_VAR_DIR"]) / "setup.json"
    if setup.exists():  # --var of an earlier run: its database and models as they are
        return json.loads(setup.read_text())
    ensure_database(env["DATABASE_URL"])
    prep = [sys.executable, str(ROOT / "bench" / "chat_latency.py"), "--prepare", str(setup)]
    subprocess.run(prep, cwd=ROOT, env=env, check=True)
    return json.loads(setup.read_text())


def summary(rows: list[tuple[float, float, int, int]]) -> dict[str, float]:
    cpu, wall, sql, sent = zip(*rows, strict=True)
    return {
        "n": len(rows),
        "cpu_ms": statistics.fmean(cpu),
        "cpu_p50": statistics.median(cpu),
        "wall_p50": statistics.median(wall),
        "sql": statistics.fmean(sql),
        "sends": statistics.fmean(sent),
    }


def main() -> None:
    args = parse_args()
    if args.measure:
        job = json.loads(Path(args.measure).read_text())
        Path(job["out"]).write_text(json.dumps(measure(job)))
        return
    sys.path.insert(0, str(ROOT))
    from bench.common import machine_note

    var = args.var or tempfile.mkdtemp(prefix="trellis-chat-profile-")
    Path(var).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "PYTHONPATH")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "core.settings",
            "TRELLIS_VAR_DIR": var,
            "HF_HUB_OFFLINE": "1",
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "ML_SERVE_THREADS": str(args.threads),
            "CS_WIDGET_MESSAGES_PER_MINUTE": "1000000",
            "CS_WIDGET_STARTS_PER_MINUTE": "1000000",
        }
    )
    data = prepare(env)
    ref = (
        args.peer_ref
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.strip()
    )
    peer = Path(args.peer_code) if args.peer_code else export_peer(ref)
    trees = {f"peer ({args.peer_code or ref[:12]})": peer}
    trees |= {f"at {step}": export_peer(step) for step in args.steps}  # each change alone, in order
    trees["this tree"] = ROOT
    questions = {"template": data["templates"], "article": data["articles"], "handoff": HANDOFF_QUESTIONS}
    results: dict[str, dict[str, list]] = {name: {} for name in trees}
    offset = 0
    for _round in range(args.rounds):
        for name, code in trees.items():
            offset += 100_000
            job_file, out_file = Path(var) / "job.json", Path(var) / "out.json"
            job = {
                "code": str(code),
                "threads": args.threads,
                "widget_key": data["widget_key"],
                "questions": questions,
                "messages": args.messages,
                "offset": offset,
                "show_sql": args.show_sql,
                "out": str(out_file),
                "profile": args.profile if code == ROOT else None,
                "kinds": args.kinds,
            }
            job_file.write_text(json.dumps(job))
            subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--measure", str(job_file)],
                cwd=code,
                env={**env, "PYTHONPATH": str(code)},
                check=True,
            )
            for source, rows in json.loads(out_file.read_text()).items():
                results[name].setdefault(source, []).extend(rows)
    print()
    print(machine_note())
    print(
        f"{args.messages} messages per answer type and round, {args.rounds} rounds,"
        f" torch threads {args.threads}"
    )
    print(
        "| code | answer | messages | CPU ms/message (mean) | CPU p50 | wall p50 ms | SQL statements"
        " | group sends |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in trees:
        every = []
        for source in sorted(results[name]):
            rows = results[name][source]
            every += rows
            s = summary(rows)
            print(
                f"| {name} | {source} | {s['n']} | {s['cpu_ms']:.1f} | {s['cpu_p50']:.1f} |"
                f" {s['wall_p50']:.1f} | {s['sql']:.1f} | {s['sends']:.1f} |"
            )
        s = summary(every)
        print(
            f"| {name} | all | {s['n']} | **{s['cpu_ms']:.1f}** | {s['cpu_p50']:.1f} | {s['wall_p50']:.1f} |"
            f" {s['sql']:.1f} | {s['sends']:.1f} |"
        )


if __name__ == "__main__":
    main()
