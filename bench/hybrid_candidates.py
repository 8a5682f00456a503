"""The hybrid's candidate path, this tree's code beside another tree's, interleaved request by request.

What a served request of a large catalogue asks of the hybrid model (``HybridModel.candidate_scores`` for the
user's history and 60 text hits, then ``why`` and ``parts`` of the ten best, as ``services.serving`` does),
timed for the same model and histories with this tree's ``recommender/hybrid.py`` and with the peer's
(``--peer-code``: another tree, e.g. ``git archive HEAD~1``), alternating which goes first, in one process: on
a machine whose speed drifts from one run to the next (BENCHMARKS.md section 15), a difference between runs
is noise, a difference within one run is not. First it checks that both give the same items, ``why`` and
``parts`` (1e-5) for every history. ``--path full``: the same for full scoring (``scores_with`` with the
explanations kept, then ``why`` and ``parts`` of the ten best), the path of catalogues up to
``hybrid.FULL_SCORING_MAX`` items such as the demo's (``--database-url`` of a ``--sizes demo`` run).

The model and histories: the newest hybrid version in ``--database-url``, as ``bench/recommender_serving.py
--sizes 100000`` leaves it (its database, trained models and events), and the first 300 of its users with a
history.

    .venv/bin/python bench/hybrid_candidates.py --peer-code /tmp/peer \\
      --database-url postgres://postgres@127.0.0.1:5432/trellis_bench_recserve_big
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-code", required=True, help="a tree whose recommender/hybrid.py is the peer")
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/trellis_bench_recserve_big"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--path",
        choices=["candidates", "full"],
        default="candidates",
        help="the candidate path (catalogues over hybrid.FULL_SCORING_MAX) or full scoring (``scores_with``, "
        "as the demo catalogue is served)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "core.settings",
            "HF_HUB_OFFLINE": "1",
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
        }
    )
    import django

    django.setup()
    from bench.common import machine_note
    from core.registry.models import ModelVersion
    from core.registry.services.serving import loaded_model
    from recommender.models import Event
    from recommender.selectors import user_history

    spec = importlib.util.spec_from_file_location(
        "peer_hybrid", Path(args.peer_code) / "recommender/hybrid.py"
    )
    assert spec is not None and spec.loader is not None
    peer_module = importlib.util.module_from_spec(spec)
    sys.modules["peer_hybrid"] = peer_module  # its dataclasses look their module up
    spec.loader.exec_module(peer_module)
    version = (
        ModelVersion.all_tenants.filter(app="recommender", task="ranking", method="hybrid")
        .order_by("-pk")
        .first()
    )
    if version is None:
        raise SystemExit("no hybrid version here: run bench/recommender_serving.py --sizes 100000 first")
    mine = loaded_model(version=version)
    peer = peer_module.HybridModel(**{f.name: getattr(mine, f.name) for f in dataclasses.fields(mine)})
    organisation = version.organisation
    users = Event.objects.for_org(organisation).values_list("user", flat=True).distinct()
    histories = []
    for user in users[: 2 * args.users]:
        history = user_history(organisation=organisation, user=user)[0]
        if history:
            histories.append(history)
        if len(histories) == args.users:
            break
    rng = np.random.default_rng(0)
    hits = [[int(i) for i in rng.integers(0, len(mine.items), 60)] for _ in histories]

    def serve(model, i: int) -> list:
        history = histories[i]
        if args.path == "full":
            scores, _ = model.scores_with(history, np.zeros(0, np.float32), [], explain=True)
            best = np.argsort(-scores, kind="stable")[:10]
        else:
            candidates, scores, _ = model.candidate_scores(history, hits[i], np.zeros(0, np.float32), [])
            best = candidates[np.argsort(-scores, kind="stable")[:10]]
        prefetch = getattr(model, "shares_prefetch", None)  # as services.serving asks a tree that has it
        if prefetch is not None:
            prefetch(history, [model.items[j] for j in best.tolist()])
        return [
            (model.items[j], model.why(history, model.items[j]), model.parts(history, model.items[j]))
            for j in best.tolist()
        ]

    for i in range(len(histories)):
        a, b = serve(peer, i), serve(mine, i)
        assert [(x[0], x[1]) for x in a] == [(x[0], x[1]) for x in b], f"history {i}: other items or why"
        for (_, _, pa), (_, _, pb) in zip(a, b, strict=True):
            assert pa.keys() == pb.keys() and all(abs(pa[k] - pb[k]) < 1e-5 for k in pa), f"history {i}"
    print(f"same items, why and parts for {len(histories)} histories ({len(mine.items)} items)")
    times: dict[str, list[float]] = {"peer": [], "this tree": []}
    for r in range(args.rounds):
        for i in range(len(histories)):
            order = [("peer", peer), ("this tree", mine)]
            for name, model in order if (i + r) % 2 else order[::-1]:
                start = time.perf_counter()
                serve(model, i)
                times[name].append(time.perf_counter() - start)
    print(machine_note())
    print("| code | requests | p50 ms | p90 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        values.sort()
        n = len(values)
        p50, p90, p99 = (1000 * values[min(n - 1, int(q * n))] for q in (0.5, 0.9, 0.99))
        print(
            f"| {name} ({args.peer_code if name == 'peer' else ROOT}) | {n} |"
            f" {p50:.3f} | {p90:.3f} | {p99:.3f} |"
        )


if __name__ == "__main__":
    main()
