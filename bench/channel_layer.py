"""A channel-layer group send on Redis: ``core.channel_layer.RedisChannelLayer`` beside channels_redis's own
class (the peer), in the same run, alternating: CPU and wall milliseconds per ``group_send`` to an empty group
(an organisation's inbox with no operator online) and to a group of one socket (a chat conversation's), with a
chat message's payload.

    .venv/bin/python bench/channel_layer.py --sends 2000 --rounds 2 --redis-url redis://127.0.0.1:6379/9
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer  # noqa: E402

from bench.common import machine_note  # noqa: E402
from core.channel_layer import RedisChannelLayer  # noqa: E402

MESSAGE = {
    "type": "event.forward",
    "event": "cs.message",
    "data": {"id": 1, "sender": "bot", "text": "Your order ships within two working days. " * 4},
}


async def measure(cls, redis_url: str, sends: int) -> dict[str, tuple[float, float]]:
    layer = cls(hosts=[redis_url], prefix=f"bench-layer-{time.time_ns()}", capacity=sends * 2)
    member = await layer.new_channel()
    await layer.group_add("one", member)
    out = {}
    for group in ("empty", "one"):
        for _ in range(100):
            await layer.group_send(group, MESSAGE)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(sends):
            await layer.group_send(group, MESSAGE)
        out[group] = (1000 * (time.process_time() - cpu) / sends, 1000 * (time.perf_counter() - wall) / sends)
    await layer.flush()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9")
    args = parser.parse_args()
    rows: dict[str, list[dict]] = {"channels_redis (peer)": [], "core.channel_layer": []}
    for _ in range(args.rounds):
        for name, cls in (
            ("channels_redis (peer)", ChannelsRedisLayer),
            ("core.channel_layer", RedisChannelLayer),
        ):
            rows[name].append(asyncio.run(measure(cls, args.redis_url, args.sends)))
    print("\n| layer | empty group: CPU ms / wall ms | group of one: CPU ms / wall ms |\n|---|---|---|")
    for name, runs in rows.items():
        cells = [
            ", ".join(f"{run[group][0]:.3f} / {run[group][1]:.3f}" for run in runs)
            for group in ("empty", "one")
        ]
        print(f"| {name} | {cells[0]} | {cells[1]} |")
    print(machine_note())


if __name__ == "__main__":
    main()
