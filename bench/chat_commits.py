"""What one chat message costs the server on the embedded default (SQLite), in process, by journal mode.

The server-side work of a visitor's message, as the widget's consumer runs it (``visitor_message_store``, its
payload, ``visitor_message_answer`` and the answers' payloads), for the same questions in a new conversation
each, on one SQLite database prepared as ``bench/chat_latency.py`` prepares it (the product's default intent
model trained on the shipped Bitext set, the demo's templates and articles). Two rows in the same run: the
database in SQLite's default rollback journal with ``synchronous=FULL`` (the peer: the product before
``core.settings.SQLITE_OPTIONS``) and in write-ahead logging with ``synchronous=NORMAL`` (the product now),
alternating in rounds so that the machine's load falls on both alike. Printed: ms per message (p50, p95,
mean), commits per message and ms per commit (from a profile of the commits).

    .venv/bin/python bench/chat_commits.py --messages 60 --rounds 3
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODES = {
    "rollback journal, synchronous=FULL (before)": ("DELETE", "FULL"),
    "WAL, synchronous=NORMAL (now)": ("WAL", "NORMAL"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=60, help="messages per mode and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a serving process: 1)")
    args = parser.parse_args()
    var = tempfile.mkdtemp(prefix="trellis-chat-commits-")
    os.environ["TRELLIS_VAR_DIR"] = var  # its own database, models and datasets
    for name in ("DATABASE_URL", "REDIS_URL", "MODEL_STORE", "DATASET_STORE"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["ML_SERVE_THREADS"] = str(args.threads)

    import torch

    torch.set_num_threads(args.threads)
    from bench import chat_latency
    from bench.common import machine_note

    questions_file = Path(var) / "questions.json"
    chat_latency.prepare(str(questions_file))  # django.setup() and the organisation
    from django.db import connection

    from customer_service import services
    from customer_service.models import BotSettings

    data = json.loads(questions_file.read_text())
    bot = BotSettings.all_tenants.get(widget_key=data["widget_key"])
    questions = (data["templates"][: max(1, args.messages - len(data["articles"]))] + data["articles"])[
        : args.messages
    ]

    def message(text: str, n: int) -> None:
        conversation, _token, _greeting = services.conversation_start(
            bot=bot, visitor=f"bench-visitor-{n:08d}"
        )
        stored, bot_has_it = services.visitor_message_store(
            conversation=conversation, text=text, client_id=None
        )
        services.message_payload(stored)
        if bot_has_it:
            for answer in services.visitor_message_answer(conversation=conversation, message=stored):
                services.message_payload(answer)

    for n, text in enumerate(questions[:10]):  # load the models, warm the caches
        message(text, n)
    times: dict[str, list[float]] = {name: [] for name in MODES}
    commits: dict[str, list[tuple[int, float]]] = {name: [] for name in MODES}
    n = 1000
    for _round in range(args.rounds):
        for name, (journal, synchronous) in MODES.items():
            connection.close()
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA journal_mode={journal}")
                cursor.execute(f"PRAGMA synchronous={synchronous}")
            profile = cProfile.Profile()
            for text in questions:
                n += 1
                start = time.perf_counter()
                profile.enable()
                message(text, n)
                profile.disable()
                times[name].append(time.perf_counter() - start)
            for (_file, _line, function), (calls, _prim, _tot, cumulative, _callers) in pstats.Stats(
                profile
            ).stats.items():  # type: ignore[attr-defined]
                if function == "<method 'commit' of 'sqlite3.Connection' objects>":
                    commits[name].append((calls, cumulative))
    print(machine_note())
    print(f"{len(questions)} messages per mode and round, {args.rounds} rounds, each in a new conversation")
    print("| database | p50 ms | p95 ms | mean ms | commits per message | ms per commit |")
    print("|---|---|---|---|---|---|")
    for name in MODES:
        values = sorted(1000 * t for t in times[name])
        calls = sum(c for c, _ in commits[name])
        seconds = sum(s for _, s in commits[name])
        p95, per_commit = values[int(0.95 * (len(values) - 1))], 1000 * seconds / max(calls, 1)
        print(
            f"| {name} | {statistics.median(values):.1f} | {p95:.1f} | {statistics.fmean(values):.1f} |"
            f" {calls / len(values):.1f} | {per_commit:.2f} |"
        )


if __name__ == "__main__":
    main()
