"""When should the support bot hand off? CLINC150: 150 in-scope intents and out-of-scope questions.

The chatbot answers from a template when the intent model's top probability reaches ``intent_threshold``
and otherwise hands the visitor to a person (``customer_service.services.decide``). This measures that rule on
CLINC150 (Larson et al., 2019; CC BY 3.0), the standard out-of-scope benchmark: the product's default intent
model (``method="head", lexical=True``) trained on the 15,000 in-scope training rows (validation: the 3,000
in-scope validation rows), scored on the 4,500 in-scope and 1,000 out-of-scope test rows, for a range of
thresholds. Peer in the same run: TF-IDF + logistic regression with the same max-probability rule.

Per threshold: in-scope questions answered correctly, answered wrongly, handed off; out-of-scope questions
handed off (recall); and CLINC's overall accuracy (an in-scope row counts when answered correctly, an
out-of-scope row when handed off). The threshold chosen on validation (in-scope val + the 100 oos_val rows)
maximises that accuracy.

    PYTHONPATH=. .venv/bin/python bench/handoff.py --threads 2
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import aligned_proba, clinc150, machine_note, tfidf_lr, timed  # noqa: E402

THRESHOLDS = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/clinc150"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="every k-th row only (smoke test)")
    return parser.parse_args()


def rule(proba: np.ndarray, labels: list[str], gold: list[str], threshold: float) -> dict[str, float]:
    """The hand-off rule's outcome on rows whose gold is an intent or 'oos'."""
    top = proba.max(1)
    predicted = np.array(labels)[proba.argmax(1)]
    gold_arr = np.array(gold)
    in_scope = gold_arr != "oos"
    answered = top >= threshold
    right = answered & (predicted == gold_arr) & in_scope
    wrong = answered & (predicted != gold_arr) & in_scope
    oos_handoff = ~answered & ~in_scope
    return {
        "threshold": threshold,
        "in_right": right.sum() / max(in_scope.sum(), 1),
        "in_wrong": wrong.sum() / max(in_scope.sum(), 1),
        "in_handoff": (~answered & in_scope).sum() / max(in_scope.sum(), 1),
        "oos_handoff": oos_handoff.sum() / max((~in_scope).sum(), 1),
        "accuracy": (right.sum() + oos_handoff.sum()) / len(gold),
    }


def best_threshold(proba: np.ndarray, labels: list[str], gold: list[str]) -> float:
    grid = np.round(np.arange(0.05, 0.96, 0.05), 2)
    return float(max(grid, key=lambda t: rule(proba, labels, gold, float(t))["accuracy"]))


def main() -> None:
    args = parse_args()
    import torch

    from core.ml.runtime import Runtime
    from core.ml.train import TrainConfig, train_classifier

    torch.set_num_threads(args.threads)
    data = clinc150(args.data, args.limit)
    train = data["train"]
    val = data["val"] + [(t, "oos") for t in data["oos_val"]]
    test = data["test"] + [(t, "oos") for t in data["oos_test"]]
    val_in = [(t, i) for t, i in val if i != "oos"]
    print(
        f"train {len(train)}, validation {len(val_in)} + {len(val) - len(val_in)} oos, "
        f"test {len(test)} ({sum(1 for _, g in test if g == 'oos')} oos); {machine_note()}",
        flush=True,
    )
    runtime = Runtime(threads=args.threads)
    config = TrainConfig(method="head", max_length=64, lexical=True)
    model = train_classifier(config=config, train=train, validation=val_in, runtime=runtime)
    peer, peer_s = timed(tfidf_lr, train)

    systems = {
        "core.ml head + lexical (product default)": (
            lambda texts: model.predict_proba(texts).numpy(),
            model.labels,
            model.stats.train_seconds,
        ),
        "peer: TF-IDF + LogisticRegression": (
            lambda texts: aligned_proba(peer, texts, model.labels),
            model.labels,
            peer_s,
        ),
    }
    results = {}
    for name, (proba_fn, labels, seconds) in systems.items():
        val_proba = proba_fn([t for t, _ in val])
        chosen = best_threshold(val_proba, labels, [g for _, g in val])
        test_proba = proba_fn([t for t, _ in test])
        gold = [g for _, g in test]
        rows = [rule(test_proba, labels, gold, t) for t in sorted({*THRESHOLDS, chosen})]
        results[name] = {"train_s": seconds, "chosen": chosen, "rows": rows}
        print(f"\n## {name} (trained in {seconds:.0f} s; threshold chosen on validation: {chosen:.2f})\n")
        print(
            "| threshold | in-scope answered right | answered wrong | handed off "
            "| out-of-scope handed off | accuracy |"
        )
        print("|---|---|---|---|---|---|")
        for r in rows:
            mark = " (chosen)" if r["threshold"] == chosen else ""
            print(
                f"| {r['threshold']:.2f}{mark} | {100 * r['in_right']:.2f}% | {100 * r['in_wrong']:.2f}% | "
                f"{100 * r['in_handoff']:.2f}% | {100 * r['oos_handoff']:.2f}% | {100 * r['accuracy']:.2f}% |"
            )
    print(f"\n{machine_note()}")


if __name__ == "__main__":
    main()
