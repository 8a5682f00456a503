"""Out-of-scope detection on CLINC150: in-scope accuracy at 75% out-of-scope recall, AUROC, threshold tables.

The product's default intent model (``method="head", lexical=True``) trained on CLINC150's 15,000 in-scope
training rows (validation: the 3,000 in-scope validation rows), scored on the 4,500 in-scope and 1,000
out-of-scope test rows with three hand-off rules: the top probability (versions without an out-of-scope
model), the ``in_scope`` probability of ``core.ml.ood`` alone (kNN similarity to the training rows plus the
top probability), and what the bot's rule now compares, ``Prediction.confidence``: the top probability capped
by ``in_scope``. Peer in the same run: TF-IDF + logistic regression with the
top-probability rule.

Per system: AUROC of the score (in-scope against out-of-scope test rows), the share of in-scope test rows
answered with the right intent where the threshold hands off 75% of the out-of-scope ones, and the threshold
table (in-scope answered right / wrong / handed off, out-of-scope handed off, CLINC's accuracy). Then the
score's alternatives on the same embeddings (energy, Mahalanobis distance, kNN alone) and the grid that
chose ``NEIGHBOURS`` and ``NEAR_WEIGHT``: scored on the validation rows against the 100 ``oos_train`` rows,
never the test split (the test columns are printed beside, for reading only).

    PYTHONPATH=. .venv/bin/python bench/oos.py --threads 2
    PYTHONPATH=. .venv/bin/python bench/oos.py --threads 2 --method full --epochs 3  # a fine-tuned model
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import aligned_proba, clinc150, machine_note, tfidf_lr, timed  # noqa: E402

THRESHOLDS = [0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
RECALL = 0.75


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/clinc150"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="every k-th row only (smoke test)")
    parser.add_argument(
        "--method",
        choices=["head", "lora", "full"],
        default="head",
        help="the intent model's training method (head: the product's default; lora/full: a fine-tune)",
    )
    parser.add_argument("--epochs", type=int, default=4, help="epochs of a lora or full fine-tune")
    return parser.parse_args()


def outcome(score: np.ndarray, predicted: np.ndarray, gold: np.ndarray, threshold: float) -> dict[str, float]:
    """The hand-off rule (answer when ``score >= threshold``) on rows whose gold is an intent or 'oos'."""
    inside, answered = gold != "oos", score >= threshold
    right = answered & (predicted == gold) & inside
    oos_handoff = ~answered & ~inside
    n_in, n_out = max(inside.sum(), 1), max((~inside).sum(), 1)
    return {
        "threshold": threshold,
        "in_right": right.sum() / n_in,
        "in_wrong": (answered & (predicted != gold) & inside).sum() / n_in,
        "in_handoff": (~answered & inside).sum() / n_in,
        "oos_handoff": oos_handoff.sum() / n_out,
        "accuracy": (right.sum() + oos_handoff.sum()) / len(gold),
    }


def auroc(score: np.ndarray, gold: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(gold != "oos", score))


def at_recall(score: np.ndarray, predicted: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """The rule at the lowest threshold that hands off at least ``RECALL`` of the out-of-scope rows."""
    outside = np.sort(score[gold == "oos"])
    need = int(np.ceil(RECALL * len(outside)))
    threshold = float(np.nextafter(outside[need - 1], np.inf)) if need else float(outside.min())
    return outcome(score, predicted, gold, threshold)


def print_system(
    name: str, train_s: float, score: np.ndarray, predicted: np.ndarray, gold: np.ndarray
) -> dict:
    point = at_recall(score, predicted, gold)
    area = auroc(score, gold)
    print(
        f"\n#### {name} (trained in {train_s:.0f} s): AUROC {area:.4f}; at {RECALL:.0%} out-of-scope recall "
        f"(threshold {point['threshold']:.3f}): in-scope answered right {100 * point['in_right']:.2f}%, "
        f"out-of-scope handed off {100 * point['oos_handoff']:.2f}%\n"
    )
    print(
        "| threshold | in-scope answered right | answered wrong | handed off "
        "| out-of-scope handed off | accuracy |"
    )
    print("|---|---|---|---|---|---|")
    for r in [outcome(score, predicted, gold, t) for t in THRESHOLDS]:
        print(
            f"| {r['threshold']:.2f} | {100 * r['in_right']:.2f}% | {100 * r['in_wrong']:.2f}% | "
            f"{100 * r['in_handoff']:.2f}% | {100 * r['oos_handoff']:.2f}% | {100 * r['accuracy']:.2f}% |"
        )
    return {"auroc": area, "at_recall": point}


def mahalanobis(
    train: np.ndarray, targets: np.ndarray, queries: np.ndarray, shrink: float = 0.3
) -> np.ndarray:
    """Negative Mahalanobis distance to the nearest class mean (shared covariance, shrunk)."""
    means = np.stack([train[targets == k].mean(0) for k in np.unique(targets)])
    centred = train - means[np.searchsorted(np.unique(targets), targets)]
    cov = centred.T @ centred / len(train)
    cov = (1 - shrink) * cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
    prec = np.linalg.inv(cov)
    xp = queries @ prec
    d2 = (xp * queries).sum(1)[:, None] - 2 * xp @ means.T + ((means @ prec) * means).sum(1)[None]
    return -d2.min(1)


def main() -> None:
    args = parse_args()
    import torch
    from scipy.special import logsumexp

    from core.ml import ood as ood_module
    from core.ml.lexical import blend
    from core.ml.modeling import embed_texts
    from core.ml.runtime import Runtime
    from core.ml.train import TrainConfig, train_classifier

    torch.set_num_threads(args.threads)
    data = clinc150(args.data, args.limit)
    train, val, oos_train = data["train"], data["val"], data["oos_train"]
    test = data["test"] + [(t, "oos") for t in data["oos_test"]]
    gold = np.array([g for _, g in test])
    print(
        f"train {len(train)}, validation {len(val)}, oos_train {len(oos_train)} (choosing the score's "
        f"settings only), test {len(test)} ({(gold == 'oos').sum()} oos); {machine_note()}",
        flush=True,
    )
    runtime = Runtime(threads=args.threads)
    model = train_classifier(
        config=TrainConfig(method=args.method, epochs=args.epochs, max_length=64, lexical=True),
        train=train,
        validation=val,
        runtime=runtime,
    )
    peer, peer_s = timed(tfidf_lr, train)
    assert model.ood is not None
    system = (
        "core.ml head + lexical (product default)"
        if args.method == "head"
        else f"core.ml {args.method} fine-tune, {args.epochs} epochs, + lexical"
    )

    def embed(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Embeddings, neural logits and the blended probabilities, as the product computes them."""
        emb = embed_texts(model.model, model.tokenizer, texts, max_length=64, batch_size=64, device="cpu")
        with torch.inference_mode():
            logits = model.model.head(emb).float()
        proba = blend(torch.softmax(logits, -1), model.lexical, model.blend_weight, texts)
        return emb.numpy(), logits.numpy(), proba.numpy()

    sets = {
        "val": embed([t for t, _ in val]),
        "oos_train": embed(oos_train),
        "test": embed([t for t, _ in test]),
    }
    emb, logits, proba = sets["test"]
    predicted = np.array(model.labels)[proba.argmax(1)]
    in_scope = model.ood.in_scope(emb, proba.max(1))
    confidence = np.minimum(proba.max(1), in_scope)
    check = model.predict([t for t, _ in test[:50]])  # the product's own path gives the same numbers
    assert np.allclose([p.in_scope for p in check], in_scope[:50], atol=1e-5)
    assert np.allclose([p.confidence for p in check], confidence[:50], atol=1e-5)
    peer_proba = aligned_proba(peer, [t for t, _ in test], model.labels)
    peer_predicted = np.array(model.labels)[peer_proba.argmax(1)]
    results = {
        "top probability (versions without an out-of-scope model)": print_system(
            f"{system}, top-probability rule",
            model.stats.train_seconds,
            proba.max(1),
            predicted,
            gold,
        ),
        "in_scope": print_system(
            f"{system}, in_scope alone (core.ml.ood)",
            model.stats.train_seconds,
            in_scope,
            predicted,
            gold,
        ),
        "bot rule": print_system(
            f"{system}, the bot's rule: min(top probability, in_scope)",
            model.stats.train_seconds,
            confidence,
            predicted,
            gold,
        ),
        "peer": print_system(
            "peer: TF-IDF + LogisticRegression, top-probability rule",
            peer_s,
            peer_proba.max(1),
            peer_predicted,
            gold,
        ),
    }

    print("\n#### Other scores on the same model's embeddings (test AUROC; in-scope right at 75% recall)\n")
    train_emb = model.ood.bank.astype(np.float32)  # the training rows' embeddings (float16 in the artifact)
    targets = np.array([model.labels.index(g) for _, g in train])
    alternatives = {
        "energy (logsumexp of the neural logits)": logsumexp(logits, 1),
        "Mahalanobis to the nearest class mean (shared covariance, shrinkage 0.3)": mahalanobis(
            train_emb, targets, emb
        ),
        f"kNN similarity alone (k={ood_module.NEIGHBOURS})": model.ood.nearness(emb),
        "Mahalanobis (standardised) + log top probability, 0.5 each": None,
    }
    val_emb, _, val_proba = sets["val"]
    maha_val = mahalanobis(train_emb, targets, val_emb)
    logp, logp_val = np.log(proba.max(1)), np.log(val_proba.max(1))
    z = lambda a, ref: (a - ref.mean()) / ref.std()  # noqa: E731
    alternatives["Mahalanobis (standardised) + log top probability, 0.5 each"] = 0.5 * z(
        alternatives["Mahalanobis to the nearest class mean (shared covariance, shrinkage 0.3)"], maha_val
    ) + 0.5 * z(logp, logp_val)
    print("| score | AUROC | in-scope answered right at 75% recall |\n|---|---|---|")
    for name, score in alternatives.items():
        point = at_recall(score, predicted, gold)
        print(f"| {name} | {auroc(score, gold):.4f} | {100 * point['in_right']:.2f}% |")

    print(
        "\n#### Choosing k and the similarity's weight: validation rows against oos_train (AUROC), "
        "test beside\n"
    )
    print(
        "| k | weight | selection AUROC (val vs oos_train) | test AUROC | test in-scope right at 75% recall |"
    )
    print("|---|---|---|---|---|")
    sel_gold = np.array(["in"] * len(val) + ["oos"] * len(oos_train))
    oos_emb, _, oos_proba = sets["oos_train"]
    for k in (1, 5, 10, 20):
        for weight in (0.5, 0.6, 0.7, 0.8, 0.9):
            refit = ood_module.fit_out_of_scope(
                train=train_emb, held_out=(val_emb, val_proba), neighbours=k, near_weight=weight
            )
            sel = np.r_[refit.score(val_emb, val_proba.max(1)), refit.score(oos_emb, oos_proba.max(1))]
            score = refit.score(emb, proba.max(1))
            point = at_recall(score, predicted, gold)
            mark = " (product)" if (k, weight) == (ood_module.NEIGHBOURS, ood_module.NEAR_WEIGHT) else ""
            print(
                f"| {k}{mark} | {weight:.1f} | {auroc(sel, sel_gold):.4f} | {auroc(score, gold):.4f} | "
                f"{100 * point['in_right']:.2f}% |"
            )
    print(f"\n{json.dumps({k: v['auroc'] for k, v in results.items()})}")
    print(f"\n{machine_note()}")


if __name__ == "__main__":
    main()
