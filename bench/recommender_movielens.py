"""The recommender's models on MovieLens ml-latest-small, side by side (issue 12's second protocol).

Ratings of 4 or more are the positives; each user's positives are ordered by time and the last 20% (rounded
up) are held out; the rest of the user's ratings before the first held-out one are the history (the
positives train every model; "seen" items, rated below 4 before the cut, are not positives but are left
out of the ranking with the history: ``--exclude positives`` leaves out only the history's positives, the
protocol the issue measured its reference figures with). Every item with a positive in training is ranked;
held-out items no one rated 4 or more before are misses for every model. NDCG@10, Recall@20, HR@10 over the
users with a held-out item and at least one positive before it.

Ours: ``recommender.ranking`` as the product trains it (popularity, item-kNN cosine, EASE with 200
neighbours per item) and the hybrid ranker (``recommender.hybrid``) with a per-user validation split
(``validation="user"``: the last 20% of each user's training items, never the held-out ones), no time decay
of the training matrix (users here are active in different years, 1996 to 2018) and the sequence component
(what users went on to next). Item text: the title and genres, embedded by the shared encoder and cached
under ``--cache``. Peers in the same run: dense numpy EASE (Steck 2019) at each lambda of ``--ease-lambdas``,
ALS and BPR from the ``implicit`` package (the ``bench`` extra) when installed.

MovieLens is for research only (GroupLens terms): it is read from ``../shared/data`` or ``--data``, never
shipped, and nothing trained here is sold.

    OPENBLAS_NUM_THREADS=2 nice .venv/bin/python -m bench.recommender_movielens   # --data <folder>
"""

import argparse
import csv
import dataclasses
import math
import os
import time
from collections import defaultdict
from pathlib import Path

from bench.recommender import CACHE, DenseEase, catalogue, evaluate, implicit_peers, latency
from recommender import hybrid, ranking, twotower

DEFAULT = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "movielens_latest_small"
if not DEFAULT.exists():  # a git worktree one level deeper
    DEFAULT = Path(__file__).resolve().parents[3] / "shared" / "data" / "movielens_latest_small"


def read(folder: Path, exclude: str):
    """(training positives, histories most recent first, held-out items, more items to exclude, texts)."""
    by_user: dict[str, list[tuple[int, str, float]]] = defaultdict(list)
    with (folder / "ratings.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_user[row["userId"]].append((int(row["timestamp"]), row["movieId"], float(row["rating"])))
    train: list[ranking.Interaction] = []
    histories: dict[str, dict[str, float]] = {}
    test: dict[str, set[str]] = {}
    seen: dict[str, set[str]] = {}
    for user, rows in by_user.items():
        rows.sort()
        positives = [r for r in rows if r[2] >= 4]
        held = math.ceil(0.2 * len(positives))
        if not held or held == len(positives):  # no positive left to learn the user from
            continue
        cut = positives[-held][0]
        test_items = {item for _, item, _ in positives[-held:]}
        before = [r for r in positives[:-held]]
        train += [(user, item, 1.0, float(when)) for when, item, _ in before]
        histories[user] = {item: 1.0 for _, item, _ in sorted(before, key=lambda r: (-r[0], r[1]))}
        test[user] = test_items
        if exclude == "seen":
            seen[user] = {item for when, item, r in rows if r < 4 and when <= cut} - test_items
    texts: dict[str, str] = {}
    with (folder / "movies.csv").open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            genres = [g for g in row["genres"].split("|") if g != "(no genres listed)"]
            texts[row["movieId"]] = f"{row['title']}. {', '.join(genres)}"
    return train, histories, test, seen, texts


HYBRID = hybrid.HybridConfig(
    validation="user",
    ease_lambdas=(300.0,),
    decay_days=(36500.0,),  # no decay: a user's history spans years, and users span decades
    history_decays=(1.0, 0.99),
    validation_users=1000,
    cold_slots=0,
)
TOWER = dataclasses.replace(HYBRID, tower_epochs=20, tower_threads=1)  # the same and the two-tower


def systems(args, train, items):
    out = [
        (
            "ours: popularity",
            lambda: ranking.fit(config=ranking.RankConfig(method="popularity"), train=train),
        ),
        (
            "ours: popularity, 10-year half-life",
            lambda: ranking.fit(
                config=ranking.RankConfig(method="popularity", half_life_days=3650), train=train
            ),
        ),
        (
            "ours: item-kNN cosine, 200 neighbours",
            lambda: ranking.fit(config=ranking.RankConfig(method="itemknn"), train=train),
        ),
        (
            "ours: EASE lambda 300, 200 neighbours",
            lambda: ranking.fit(config=ranking.RankConfig(method="ease"), train=train),
        ),
        (
            "ours: hybrid (EASE + sequence + text + popularity, per-user validation)",
            lambda: hybrid.fit(config=HYBRID, train=train, catalogue=items, progress=print),
        ),
    ]
    out += [
        (
            "ours: two-tower alone (text projection + id embeddings, trained on behaviour)",
            lambda: hybrid.fit_tower(config=TOWER, train=train, catalogue=items, progress=print),
        ),
        (
            "ours: hybrid + two-tower",
            lambda: hybrid.fit(config=TOWER, train=train, catalogue=items, progress=print),
        ),
    ]
    for lam in args.ease_lambdas:
        out.append((f"peer: numpy EASE lambda {lam:g}, dense", lambda lam=lam: DenseEase(train, lam)))
    return out + implicit_peers(train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT, help="a GroupLens folder (ratings.csv, movies.csv)"
    )
    parser.add_argument("--exclude", choices=("positives", "seen"), default="positives")
    parser.add_argument("--ease-lambdas", type=float, nargs="+", default=[100.0, 300.0, 500.0])
    parser.add_argument("--cache", type=Path, default=CACHE, help="where item text vectors are cached")
    parser.add_argument("--only", default="", help="run only the systems whose name contains this")
    args = parser.parse_args()
    if not (args.data / "ratings.csv").is_file():
        raise SystemExit(f"{args.data} holds no ratings.csv: give a GroupLens folder with --data")
    train, histories, test, seen, texts = read(args.data, args.exclude)
    items = catalogue(texts, args.cache, name="movielens", threads=2)
    known = {i for _, i, _, _ in train}
    print(
        f"positives in training {len(train)}, users {len(histories)}, items with a positive {len(known)}; "
        f"held out {sum(map(len, test.values()))} (items never positive before: "
        f"{len({i for t in test.values() for i in t} - known)}); excluded from the ranking: the history's "
        f"{'positives and seen items' if args.exclude == 'seen' else 'positives'}"
    )
    print(f"load average {os.getloadavg()[0]:.1f}")
    rows = ["| system | NDCG@10 | Recall@20 | HR@10 | coverage | fit s |", "|---|---|---|---|---|---|"]
    for name, fit in systems(args, train, items):
        if args.only and args.only not in name:
            continue
        started = time.perf_counter()
        model = fit()
        fitted = time.perf_counter() - started
        if isinstance(model, twotower.TowerModel):
            print(f"two-tower: {model.epochs} epochs, decay {model.decay:.3f}, validation {model.validation}")
        if isinstance(model, hybrid.HybridModel):
            print(f"hybrid setting {model.setting}, weights {model.weights}, validation {model.validation}")
        m = evaluate(model, histories, test, set(), set(), len(known), exclude=seen)
        p50, p99 = latency(model, histories)
        rows.append(
            f"| {name} | {m['ndcg@10']:.4f} | {m['recall@20']:.4f} | {m['hr@10']:.4f} "
            f"| {m['coverage']:.3f} | {fitted:.1f} |"
        )
        print(rows[-1], f"(top-10 p50/p99 {p50:.2f}/{p99:.2f} ms; {m['users']} users)", flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
