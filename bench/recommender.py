"""The recommender's models on the full Online Retail copy, side by side (issue 12's protocol).

Purchase lines with a customer, a positive quantity and no cancellation; (customer, item) pairs binarised;
training = lines before 2011-10-01; test = the items each customer bought in October 2011 that they had not
bought before; every item of the training data is ranked, the customer's own training items excluded;
NDCG@10, Recall@10, Recall@20 and HR@10 over the customers with at least one training and one test item.
Items first sold in October (cold items) cannot be ranked by any of these models: they count as misses and
their number is printed.

Ours: ``recommender.ranking`` as the product trains it (popularity with a 14-day half-life, item-kNN cosine
and EASE lambda 300, each item-item matrix pruned to its 200 strongest entries per row) and the hybrid
ranker (``recommender.hybrid``: EASE on time-decayed events + item text by the shared encoder + popularity
+ trend + rising sales, setting and blend weights fitted on September, the training data's last 28 days;
never on October), and the same hybrid without its rising component (``rising_days: 0``). The hybrid
ranks the whole catalogue: every stock code of the file with a description, including items first sold
after the cut (their text is known, their sales are not). Peers in the same run: EASE in
plain numpy, dense and unpruned (Steck 2019), the reference the issue measured at 0.096; ALS and BPR from
the ``implicit`` package (the ``bench`` extra) when it is installed.

Cold items: the items bought in October with no sale before the cut. "cold HR@10" is over the customers
who bought one: the share whose top 10 (the same full ranking) holds one of theirs; "cold HR@10 among new"
ranks only the catalogue's items with no sale before the cut. Models that cannot score an item give it
nothing: collaborative peers score 0 on both. Coverage: the share of the catalogue that appears in at
least one customer's top 10.

Item texts are embedded once (all-MiniLM-L6-v2, the shared encoder) and cached under ``--cache``.

    nice .venv/bin/python -m bench.recommender   # --data <online_retail.csv.gz>, --ease-lambda 300
"""

import argparse
import copy
import csv
import dataclasses
import gzip
import hashlib
import json
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np

from recommender import hybrid, pairs, ranking, twotower

DEFAULT = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "data"
    / "online_retail"
    / "online_retail.csv.gz"
)
if not DEFAULT.exists():  # a git worktree one level deeper (../../shared)
    DEFAULT = (
        Path(__file__).resolve().parents[3] / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
    )
CACHE = Path(__file__).resolve().parent.parent / "var" / "bench"
CUT = "2011-10-01"


def read(path: Path) -> tuple[list[ranking.Interaction], dict[str, set[str]]]:
    train: list[ranking.Interaction] = []
    test: dict[str, set[str]] = defaultdict(set)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if not row["CustomerID"] or row["InvoiceNo"].startswith("C") or float(row["Quantity"]) <= 0:
                continue
            user, item = row["CustomerID"], row["StockCode"]
            if row["InvoiceDate"] < CUT:
                train.append((user, item, 1.0, datetime.fromisoformat(row["InvoiceDate"]).timestamp()))
            else:
                test[user].add(item)
    return train, test


class DenseEase:
    """The peer: EASE in numpy, dense, unpruned."""

    def __init__(self, train: list[ranking.Interaction], lam: float) -> None:
        self.items = sorted({i for _, i, _, _ in train})
        self.index = {item: n for n, item in enumerate(self.items)}
        users = sorted({u for u, _, _, _ in train})
        user_ix = {u: n for n, u in enumerate(users)}
        x = np.zeros((len(users), len(self.items)), dtype=np.float64)
        for u, i, _, _ in train:
            x[user_ix[u], self.index[i]] = 1.0
        g = x.T @ x
        g[np.diag_indices_from(g)] += lam
        p = np.linalg.inv(g)
        self.b = -p / np.diag(p)[None, :]
        np.fill_diagonal(self.b, 0.0)

    def scores(self, history: dict[str, float]) -> np.ndarray:
        x = np.zeros(len(self.items))
        for item in history:
            x[self.index[item]] = 1.0
        return x @ self.b


def read_texts(path: Path) -> dict[str, str]:
    """Each stock code's most frequent description (the catalogue text)."""
    counts: dict[str, Counter] = defaultdict(Counter)
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if row["Description"].strip():
                counts[row["StockCode"]][row["Description"].strip()] += 1
    return {code: c.most_common(1)[0][0] for code, c in sorted(counts.items())}


def catalogue(
    texts: dict[str, str], cache: Path, name: str = "online_retail", threads: int = 1
) -> hybrid.Catalogue:
    """The items' text vectors by the shared encoder, embedded once and cached under ``cache`` as
    ``<name>_items_<hash of the texts>.npy``."""
    items = sorted(texts)
    key = hashlib.sha256(json.dumps([items, [texts[i] for i in items]]).encode()).hexdigest()[:16]
    file = cache / f"{name}_items_{key}.npy"
    if file.exists():
        vectors = np.load(file, allow_pickle=False)
    else:
        from core.ml.embedder import load_base_embedder
        from core.ml.runtime import Runtime

        started = time.perf_counter()
        embedder = load_base_embedder(runtime=Runtime(device="cpu", threads=threads))
        vectors = embedder.embed([texts[i] for i in items])
        cache.mkdir(parents=True, exist_ok=True)
        np.save(file, vectors, allow_pickle=False)
        print(f"embedded {len(items)} item texts in {time.perf_counter() - started:.0f} s -> {file}")
    return hybrid.Catalogue(items=items, vectors=vectors, texts=[texts[i] for i in items])


def tuned_catalogue(
    train: list[ranking.Interaction],
    texts: dict[str, str],
    base: hybrid.Catalogue,
    cache: Path,
    threads: int = 2,
) -> hybrid.Catalogue:
    """The item texts embedded by the shared encoder with the product's LoRA adapter, tuned on behaviour as
    ``recommender.services.tuning`` tunes it: the pairs of ``recommender.pairs`` from the events before the
    hybrid's validation window (never October, never September's validation month), split as the product's
    pairs dataset is (``pairs.SPLIT``), trained by the platform's embedder with ``pairs.TUNE_CONFIG``.
    Cached under ``cache`` by the pairs and the settings."""
    before, _ = hybrid.time_split(train, hybrid.HybridConfig())
    found, total = pairs.behaviour_pairs(((u, i, t) for u, i, _, t in before), texts)
    train_share = int(pairs.SPLIT.split("/")[0]) / 100
    cut = int(len(found) * train_share)
    fit_rows, val_rows = found[:cut], found[cut : cut + (len(found) - cut) // 2]
    key = hashlib.sha256(json.dumps([found, pairs.TUNE_CONFIG, base.items]).encode()).hexdigest()[:16]
    file = cache / f"online_retail_items_tuned_{key}.npy"
    print(f"item-text pairs: {total} distinct before the validation window, {len(fit_rows)} trained on")
    if file.exists():
        return dataclasses.replace(base, vectors=np.load(file, allow_pickle=False))
    from core.ml.retrieval import EmbedConfig, train_embedder
    from core.ml.runtime import Runtime

    started = time.perf_counter()
    model = train_embedder(
        config=EmbedConfig(**pairs.TUNE_CONFIG),
        train=fit_rows,
        validation=val_rows,
        runtime=Runtime(device="cpu", threads=threads),
        progress=lambda p: None,
        should_stop=lambda: False,
    )
    trained = time.perf_counter() - started
    vectors = model.embed(base.texts).astype(np.float32)
    embedded = time.perf_counter() - started - trained
    cache.mkdir(parents=True, exist_ok=True)
    np.save(file, vectors, allow_pickle=False)
    print(
        f"LoRA adapter trained in {trained:.0f} s ({model.stats.steps} steps, validation MRR "
        f"{model.stats.best_val_mrr:.3f}); catalogue embedded again in {embedded:.0f} s"
    )
    return dataclasses.replace(base, vectors=vectors)


class Implicit:
    """A peer from the ``implicit`` package (ALS or BPR) on the binarised customers x items matrix."""

    def __init__(self, train: list[ranking.Interaction], model) -> None:
        import scipy.sparse as sp

        self.items = sorted({i for _, i, _, _ in train})
        self.index = {item: n for n, item in enumerate(self.items)}
        users = sorted({u for u, _, _, _ in train})
        self.users = {u: n for n, u in enumerate(users)}
        pairs = {(self.users[u], self.index[i]) for u, i, _, _ in train}
        rows, cols = zip(*pairs, strict=True)
        x = sp.csr_matrix(
            (np.ones(len(pairs), dtype=np.float32), (rows, cols)), shape=(len(users), len(self.items))
        )
        model.fit(x, show_progress=False)
        self.user_factors = np.asarray(_to_numpy(model.user_factors))
        self.item_factors = np.asarray(_to_numpy(model.item_factors))

    def user_scores(self, user: str) -> np.ndarray:
        return self.item_factors @ self.user_factors[self.users[user]]


def _to_numpy(factors):
    return factors.to_numpy() if hasattr(factors, "to_numpy") else factors


def _scores(model, user: str, history: dict[str, float]) -> np.ndarray:
    if hasattr(model, "user_scores"):
        return np.asarray(model.user_scores(user), dtype=np.float64)
    return np.asarray(model.scores({i: 1.0 for i in history}), dtype=np.float64)


def ordered_histories(train: list[ranking.Interaction]) -> dict[str, dict[str, float]]:
    """Each user's items, most recent first (the order the product's ``user_history`` reads them in)."""
    latest: dict[str, dict[str, float]] = defaultdict(dict)
    for user, item, _, when in train:
        latest[user][item] = max(latest[user].get(item, when), when)
    return {
        user: {i: 1.0 for i in sorted(seen, key=lambda i: (-seen[i], i))} for user, seen in latest.items()
    }


def evaluate(
    model,
    histories: dict[str, dict[str, float]],
    test: dict[str, set[str]],
    cold: set[str],
    new: set[str],
    size: int,
    exclude: dict[str, set[str]] | None = None,
) -> dict[str, float]:
    """``histories``: each user's items, most recent first; ``exclude``: more items per user left out of the
    ranking (items seen but not in the history)."""
    sums: dict[str, float] = defaultdict(float)
    users = cold_users = 0
    shown: set[str] = set()
    new_rows = np.array(sorted(model.index[i] for i in new if i in model.index), dtype=np.int64)
    for user, history in histories.items():
        targets = test.get(user, set()) - history.keys()
        if not targets:
            continue
        users += 1
        scores = _scores(model, user, history)
        for item in history.keys() | (exclude or {}).get(user, set()):
            if item in model.index:
                scores[model.index[item]] = -np.inf
        top = [model.items[i] for i in np.argsort(-scores, kind="stable")[:20]]
        shown.update(top[:10])
        hits10 = [n for n, item in enumerate(top[:10]) if item in targets]
        dcg = sum(1 / math.log2(n + 2) for n in hits10)
        idcg = sum(1 / math.log2(n + 2) for n in range(min(10, len(targets))))
        sums["ndcg@10"] += dcg / idcg
        sums["recall@10"] += len(hits10) / len(targets)
        sums["recall@20"] += sum(item in targets for item in top) / len(targets)
        sums["hr@10"] += bool(hits10)
        cold_targets = targets & cold
        if cold_targets:
            cold_users += 1
            sums["cold_hr@10"] += any(item in cold_targets for item in top[:10])
            if len(new_rows):
                among = new_rows[np.argsort(-scores[new_rows], kind="stable")[:10]]
                sums["cold_new_hr@10"] += any(model.items[i] in cold_targets for i in among)
    out = {k: v / max(1, users) for k, v in sums.items() if not k.startswith("cold")}
    out["cold_hr@10"] = sums["cold_hr@10"] / max(1, cold_users)
    out["cold_new_hr@10"] = sums["cold_new_hr@10"] / max(1, cold_users)
    return out | {"users": users, "cold_users": cold_users, "coverage": len(shown) / size}


def latency(model, histories: dict[str, dict[str, float]], n: int = 1000) -> tuple[float, float]:
    """p50/p99 ms of scoring one user's history, taking the top 10 and explaining them (in process, no
    database: the model's share of a request)."""
    users = sorted(histories)[:n]
    times = []
    for user in users:
        history = histories[user]
        started = time.perf_counter()
        scores = _scores(model, user, histories[user])
        top = np.argpartition(-scores, 10)[:10]
        if hasattr(model, "why"):
            for i in top:
                model.why(history, model.items[i])
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def systems(
    args, train, items: hybrid.Catalogue, tuned: Callable[[], hybrid.Catalogue]
) -> list[tuple[str, Callable[[], object]]]:
    lam = args.ease_lambda
    out: list[tuple[str, Callable[[], object]]] = [
        (
            "ours: popularity (14-day half-life)",
            lambda: ranking.fit(config=ranking.RankConfig(method="popularity"), train=train),
        ),
        (
            "ours: item-kNN cosine, 200 neighbours",
            lambda: ranking.fit(config=ranking.RankConfig(method="itemknn"), train=train),
        ),
        (
            f"ours: EASE lambda {lam:g}, 200 neighbours",
            lambda: ranking.fit(config=ranking.RankConfig(method="ease", ease_lambda=lam), train=train),
        ),
        (
            "ours: hybrid (EASE on decayed events + text + popularity + trend + rising)",
            lambda: hybrid.fit(config=hybrid.HybridConfig(), train=train, catalogue=items, progress=print),
        ),
        (
            "ours: hybrid without rising (rising_days 0: section 12b's hybrid)",
            lambda: hybrid.fit(
                config=hybrid.HybridConfig(rising_days=0), train=train, catalogue=items, progress=print
            ),
        ),
        (
            "ours: two-tower alone (text projection + id embeddings, trained on behaviour)",
            lambda: hybrid.fit_tower(config=TOWER, train=train, catalogue=items, progress=print),
        ),
        (
            "ours: hybrid + two-tower",
            lambda: hybrid.fit(config=TOWER, train=train, catalogue=items, progress=print),
        ),
        (
            "ours: hybrid, item text tuned on behaviour (LoRA)",
            lambda: hybrid.fit(config=hybrid.HybridConfig(), train=train, catalogue=tuned(), progress=print),
        ),
        (
            "ours: two-tower alone, item text tuned on behaviour (LoRA)",
            lambda: hybrid.fit_tower(config=TOWER, train=train, catalogue=tuned(), progress=print),
        ),
        (
            "ours: hybrid + two-tower, item text tuned on behaviour (LoRA)",
            lambda: hybrid.fit(config=TOWER, train=train, catalogue=tuned(), progress=print),
        ),
        (f"peer: numpy EASE lambda {lam:g}, dense", lambda: DenseEase(train, lam)),
    ]
    return out + implicit_peers(train)


TOWER = hybrid.HybridConfig(tower_epochs=20, tower_threads=1)  # the hybrid's defaults and the two-tower


def implicit_peers(train: list[ranking.Interaction]) -> list[tuple[str, Callable[[], object]]]:
    """ALS and BPR from the ``implicit`` package (the ``bench`` extra), or none when it is not installed."""
    try:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
    except ImportError:
        print("implicit is not installed (pip install -e '.[bench]'): no ALS/BPR peers")
        return []
    return [
        (
            "peer: implicit ALS, 64 factors",
            lambda: Implicit(
                train, AlternatingLeastSquares(factors=64, iterations=15, num_threads=2, random_state=0)
            ),
        ),
        (
            "peer: implicit BPR, 64 factors",
            lambda: Implicit(
                train, BayesianPersonalizedRanking(factors=64, iterations=100, num_threads=2, random_state=0)
            ),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--ease-lambda", type=float, default=300.0)
    parser.add_argument("--cache", type=Path, default=CACHE, help="where item text vectors are cached")
    parser.add_argument("--only", default="", help="run only the systems whose name contains this")
    args = parser.parse_args()
    train, test = read(args.data)
    histories = ordered_histories(train)
    known = {i for _, i, _, _ in train}
    cold = {i for items in test.values() for i in items} - known
    texts = read_texts(args.data)
    items = catalogue(texts, args.cache)
    new = set(items.items) - known
    memo: list[hybrid.Catalogue] = []

    def tuned() -> hybrid.Catalogue:
        if not memo:
            memo.append(tuned_catalogue(train, texts, items, args.cache))
        return memo[0]

    print(
        f"train lines {len(train)}, customers {len(histories)}, items {len(known)}; "
        f"October customers {len(test)}, cold items bought in October {len(cold)}; "
        f"catalogue {len(items.items)} items, {len(new)} with no sale before the cut"
    )
    print(f"load average {os.getloadavg()[0]:.1f}")
    header = "| system | NDCG@10 | Recall@20 | HR@10 | coverage | cold HR@10 | cold HR@10 among new | fit s |"
    rows = [header, "|---|---|---|---|---|---|---|---|"]
    for name, fit in systems(args, train, items, tuned):
        if args.only and args.only not in name:
            continue
        started = time.perf_counter()
        model = fit()
        fitted = time.perf_counter() - started
        variants = [(name, model)]
        if isinstance(model, twotower.TowerModel):
            print(f"two-tower: {model.epochs} epochs, decay {model.decay:.3f}, validation {model.validation}")
        if isinstance(model, hybrid.HybridModel):
            print(f"hybrid setting {model.setting}, weights {model.weights}, validation {model.validation}")
            plain = copy.copy(model)  # the same fit, without the cold slot (a serving-time rule)
            plain.config = dataclasses.replace(model.config, cold_slots=0)
            variants = [(f"{name}, 1 cold slot", model), (f"{name}, no cold slot", plain)]
        for name, model in variants:
            _row(rows, name, model, fitted, histories, test, cold, new, len(items.items))
    print("\n".join(rows))


def _row(rows, name, model, fitted, histories, test, cold, new, size) -> None:
    m = evaluate(model, histories, test, cold, new, size)
    p50, p99 = latency(model, histories)
    rows.append(
        f"| {name} | {m['ndcg@10']:.4f} | {m['recall@20']:.4f} | {m['hr@10']:.4f} | {m['coverage']:.3f} "
        f"| {m['cold_hr@10']:.3f} | {m['cold_new_hr@10']:.3f} | {fitted:.1f} |"
    )
    print(
        rows[-1],
        f"(top-10 p50/p99 {p50:.2f}/{p99:.2f} ms; {m['users']} customers, "
        f"{m['cold_users']} with a cold item)",
        flush=True,
    )


if __name__ == "__main__":
    main()
