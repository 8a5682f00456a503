"""The base encoder for one question, as knowledge-base search embeds it: traced (served) beside eager.

Loads the base encoder twice (``core.ml.embedder.load_base_embedder`` with its verified TorchScript trace, and
with ``trace=False``), checks that both give the same vectors, then embeds the shipped BANKING77 test
questions one at a time, the two alternating in rounds, on ``--threads`` torch threads (a serving process: 1).
Prints the CPU and wall milliseconds per question of each.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/base_embedder_trace.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_note  # noqa: E402
from bench.http_serving import read_rows  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=80, help="the shipped slice has 80")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np

    from core.ml.embedder import load_base_embedder
    from core.ml.runtime import Runtime

    runtime = Runtime(device="cpu", threads=args.threads)
    embedders = {
        "peer: eager encoder (before)": load_base_embedder(runtime=runtime, trace=False),
        "traced encoder (served now)": load_base_embedder(runtime=runtime),
    }
    questions = [text for text, _label in read_rows("test_slice.csv")][: args.questions]
    vectors = [embedder.embed(questions) for embedder in embedders.values()]
    gap = float(np.abs(vectors[0] - vectors[1]).max())
    cpu: dict[str, list[float]] = {name: [] for name in embedders}
    wall: dict[str, list[float]] = {name: [] for name in embedders}
    for _round in range(args.rounds):
        for name, embedder in embedders.items():
            for question in questions:
                c, w = time.process_time(), time.perf_counter()
                embedder.embed([question])
                cpu[name].append(1000 * (time.process_time() - c))
                wall[name].append(1000 * (time.perf_counter() - w))
    print(f"\n{len(questions)} questions x {args.rounds} rounds, torch threads {args.threads}")
    print(f"largest difference between the two vectors of a question: {gap:.2e}")
    print("| encoder | CPU ms per question (mean) | wall p50 ms | wall p99 ms |")
    print("|---|---|---|---|")
    for name in embedders:
        ordered = sorted(wall[name])
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        mean_cpu, p50 = statistics.fmean(cpu[name]), statistics.median(ordered)
        print(f"| {name} | {mean_cpu:.2f} | {p50:.2f} | {p99:.2f} |")
    print(machine_note())


if __name__ == "__main__":
    main()
