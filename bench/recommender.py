"""The recommender's baselines on the full Online Retail copy, side by side (issue 12's protocol).

Purchase lines with a customer, a positive quantity and no cancellation; (customer, item) pairs binarised;
training = lines before 2011-10-01; test = the items each customer bought in October 2011 that they had not
bought before; every item of the training data is ranked, the customer's own training items excluded;
NDCG@10, Recall@10, Recall@20 and HR@10 over the customers with at least one training and one test item.
Items first sold in October (cold items) cannot be ranked by any of these models: they count as misses and
their number is printed.

Ours: ``recommender.ranking`` as the product trains it (popularity with a 14-day half-life, item-kNN cosine
and EASE lambda 300, each item-item matrix pruned to its 200 strongest entries per row). Peer in the same
run: EASE in plain numpy, dense and unpruned (Steck 2019), the reference the issue measured at 0.096.

    .venv/bin/python -m bench.recommender   # --data <online_retail.csv.gz>, --ease-lambda 300
"""

import argparse
import csv
import gzip
import math
import os
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np

from recommender import ranking

DEFAULT = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "data"
    / "online_retail"
    / "online_retail.csv.gz"
)
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


def evaluate(model, histories: dict[str, set[str]], test: dict[str, set[str]]) -> dict[str, float]:
    sums = defaultdict(float)
    users = 0
    for user, history in histories.items():
        targets = test.get(user, set()) - history
        if not targets:
            continue
        users += 1
        scores = np.asarray(model.scores({i: 1.0 for i in history}), dtype=np.float64)
        for item in history:
            scores[model.index[item]] = -np.inf
        top = [model.items[i] for i in np.argsort(-scores, kind="stable")[:20]]
        hits10 = [n for n, item in enumerate(top[:10]) if item in targets]
        dcg = sum(1 / math.log2(n + 2) for n in hits10)
        idcg = sum(1 / math.log2(n + 2) for n in range(min(10, len(targets))))
        sums["ndcg@10"] += dcg / idcg
        sums["recall@10"] += len(hits10) / len(targets)
        sums["recall@20"] += sum(item in targets for item in top) / len(targets)
        sums["hr@10"] += bool(hits10)
    return {k: v / max(1, users) for k, v in sums.items()} | {"users": users}


def latency(model, histories: dict[str, set[str]], n: int = 1000) -> tuple[float, float]:
    """p50/p99 ms of scoring one user's history, taking the top 10 and explaining them (in process, no
    database: the model's share of a request)."""
    users = sorted(histories)[:n]
    times = []
    for user in users:
        history = {i: 1.0 for i in histories[user]}
        started = time.perf_counter()
        scores = np.asarray(model.scores(history), dtype=np.float64)
        top = np.argpartition(-scores, 10)[:10]
        if hasattr(model, "why"):
            for i in top:
                model.why(history, model.items[i])
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--ease-lambda", type=float, default=300.0)
    args = parser.parse_args()
    train, test = read(args.data)
    histories: dict[str, set[str]] = defaultdict(set)
    for user, item, _, _ in train:
        histories[user].add(item)
    known = {i for _, i, _, _ in train}
    cold = {i for items in test.values() for i in items} - known
    print(
        f"train lines {len(train)}, customers {len(histories)}, items {len(known)}; "
        f"October customers {len(test)}, cold items bought in October {len(cold)}"
    )
    print(f"load average {os.getloadavg()[0]:.1f}")
    systems = [
        (
            "ours: popularity (14-day half-life)",
            lambda: ranking.fit(config=ranking.RankConfig(method="popularity"), train=train),
        ),
        (
            "ours: item-kNN cosine, 200 neighbours",
            lambda: ranking.fit(config=ranking.RankConfig(method="itemknn"), train=train),
        ),
        (
            f"ours: EASE lambda {args.ease_lambda:g}, 200 neighbours",
            lambda: ranking.fit(
                config=ranking.RankConfig(method="ease", ease_lambda=args.ease_lambda), train=train
            ),
        ),
        (f"peer: numpy EASE lambda {args.ease_lambda:g}, dense", lambda: DenseEase(train, args.ease_lambda)),
    ]
    print("| system | NDCG@10 | Recall@10 | Recall@20 | HR@10 | fit s | customers | top-10 p50/p99 ms |")
    print("|---|---|---|---|---|---|---|---|")
    for name, fit in systems:
        started = time.perf_counter()
        model = fit()
        fitted = time.perf_counter() - started
        m = evaluate(model, histories, test)
        p50, p99 = latency(model, histories)
        print(
            f"| {name} | {m['ndcg@10']:.4f} | {m['recall@10']:.4f} | {m['recall@20']:.4f} | {m['hr@10']:.4f} "
            f"| {fitted:.1f} | {m['users']} | {p50:.2f} / {p99:.2f} |"
        )


if __name__ == "__main__":
    main()
