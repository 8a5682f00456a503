"""Vector index benchmark: exact numpy top-k (the peer) vs the faiss IVF index ``core.vectors`` uses above
``ANN_MIN_VECTORS``, at 10k and 1M vectors of 384 dimensions.

Vectors: synthetic, unit length, drawn around n/5 centres (five vectors per neighbourhood at any size)
with noise at 0.75 of the centres' scale: an average nearest-neighbour cosine of about 0.67, like sentence
embeddings of related support questions. ``--shape topics`` (default) groups the centres under 1,000
topics, as real embeddings are (subjects, then paraphrases); ``--shape flat`` draws them independently,
which leaves no structure above the five-vector neighbourhoods: the hard case for an inverted file.
Queries come from the same distribution and are not in the index. Reports per-query latency
(p50/p99, one query at a time, ``--threads`` threads for numpy's BLAS and faiss's OpenMP), build time,
memory, and recall@10 of the ANN index against the exact top 10.

    .venv/bin/python bench/vector_index.py --sizes 10000 1000000 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_note
from core.ml.vector_index import ANN_MIN_VECTORS, NPROBE, VectorIndex, unit_rows

DIM, K, PER_CENTRE, NOISE, TOPICS = 384, 10, 5, 0.75, 1000


def vectors(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """``n`` unit vectors, each near a random one of ``centres``."""
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: 1M x 384 float64 noise would take 3 GB at once
        m = min(100_000, n - start)
        noise = rng.standard_normal((m, DIM), dtype=np.float32) * NOISE
        out[start : start + m] = unit_rows(centres[rng.integers(0, len(centres), m)] + noise)
    return out


def latencies(index: VectorIndex, queries: np.ndarray) -> tuple[list[list[int]], list[float]]:
    found, times = [], []
    for query in queries:
        start = time.perf_counter()
        matches = index.search(query, K)[0]
        times.append((time.perf_counter() - start) * 1000)
        found.append([m.key for m in matches])
    return found, times


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p))


def make_centres(n: int, shape: str, rng: np.random.Generator) -> np.ndarray:
    """``flat``: n/5 independent random centres. ``topics``: the same number of centres, each near one of
    ``TOPICS`` topic centres (distance 0.6 of their scale), as paraphrase groups inside subjects are."""
    if shape == "flat":
        return rng.standard_normal((max(1, n // PER_CENTRE), DIM), dtype=np.float32)
    topics = rng.standard_normal((TOPICS, DIM), dtype=np.float32)
    count = max(1, n // PER_CENTRE)
    return topics[rng.integers(0, TOPICS, count)] + rng.standard_normal((count, DIM), dtype=np.float32) * 0.6


def run(
    n: int, queries: int, threads: int, nprobes: list[int], rng: np.random.Generator, shape: str
) -> list[str]:
    centres = make_centres(n, shape, rng)
    data, asked = vectors(n, rng, centres), vectors(queries, rng, centres)
    keys = range(n)
    lines = []
    start = time.perf_counter()
    exact = VectorIndex(keys, data, ann_min=n + 1, threads=threads)
    exact_build = time.perf_counter() - start
    truth, exact_ms = latencies(exact, asked)
    nn = float(np.mean([exact.search(q, 1)[0][0].score for q in asked[:50]]))
    lines.append(
        f"| {n:,} | exact (numpy) | {exact_build:.2f} | {exact.nbytes / 2**20:.0f} | "
        f"{pct(exact_ms, 50):.2f} | {pct(exact_ms, 99):.2f} | 1.000 |"
    )
    del exact
    start = time.perf_counter()
    ann = VectorIndex(keys, data, ann_min=0, threads=threads)
    ann_build = time.perf_counter() - start
    for nprobe in nprobes:
        ann.nprobe = nprobe
        found, ann_ms = latencies(ann, asked)
        recall = statistics.mean(len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True))
        lines.append(
            f"| {n:,} | IVF, {ann._ann.nlist} lists, nprobe {nprobe} | {ann_build:.2f} | "
            f"{ann.nbytes / 2**20:.0f} | {pct(ann_ms, 50):.2f} | {pct(ann_ms, 99):.2f} | {recall:.3f} |"
        )
    lines.append(f"(n={n:,}: mean nearest-neighbour cosine of the queries {nn:.2f})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shape", choices=["topics", "flat"], default="topics")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[16, NPROBE, 128])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"# vector index, {DIM} dims, {args.shape} vectors, k={K}, {args.queries} queries, "
        f"threads={args.threads}, {machine_note()}"
    )
    print(f"# core.vectors switches to the ANN index at {ANN_MIN_VECTORS:,} vectors; default nprobe {NPROBE}")
    print("| vectors | index | build s | memory MiB | p50 ms | p99 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    with threadpool_limits(args.threads):
        for n in args.sizes:
            for line in run(n, args.queries, args.threads, args.nprobe, rng, args.shape):
                print(line, flush=True)


if __name__ == "__main__":
    main()
