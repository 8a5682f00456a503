"""BANKING77 benchmark: core.ml training methods vs a TF-IDF + logistic-regression peer, in one run.

Trains on the 10,003 training rows (5% held out, stratified, as validation: the head's C, early stopping and
the blend weight), reports accuracy and macro-F1 on the 3,080 test rows, and training wall time. Every core.ml
row is the product path (``train_classifier``); neural-only and lexical-only rows are its members.
Anchors (published): fine-tuned BERT 93.7%, USE+ConveRT 93.4% (Casanueva et al., 2020).

    .venv/bin/python bench/banking77.py --threads 2
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Row, machine_note, member_rows, print_table, score, stratified_split, tfidf_lr, timed


def read_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [(row["text"], row["category"]) for row in csv.DictReader(handle)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/banking77"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--base-model", default=None, help="packaged name or folder; default MiniLM-L6")
    parser.add_argument("--finetune", default="none", choices=["none", "lora", "full"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument(
        "--no-warm-start", action="store_true", help="fine-tune from a randomly initialised head"
    )
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--skip-head", action="store_true", help="only the peer and the fine-tuning rows")
    parser.add_argument("--budget-min", type=float, default=10.0, help="time budget of the fine-tuning run")
    parser.add_argument("--limit", type=int, default=0, help="use only every k-th training row (smoke test)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    import torch

    from core.ml.runtime import Runtime
    from core.ml.train import TrainConfig, train_classifier

    torch.set_num_threads(args.threads)
    runtime = Runtime(base_model_path=args.base_model, device=args.device, threads=args.threads)
    train_all, test = read_rows(args.data / "train.csv"), read_rows(args.data / "test.csv")
    if args.limit:
        train_all, test = train_all[:: args.limit], test[:: args.limit]
    fit, val = stratified_split(train_all, 0.05, seed=0)
    texts, gold = [t for t, _ in test], [g for _, g in test]
    print(f"train {len(fit)} + validation {len(val)}, test {len(test)}; {machine_note()}", flush=True)
    peer, peer_s = timed(tfidf_lr, train_all)
    rows = [
        Row(
            "peer: TF-IDF + LogisticRegression (all training rows)", *score(gold, peer.predict(texts)), peer_s
        )
    ]
    if not args.skip_head:
        head_config = TrainConfig(method="head", max_length=64, lexical=True)
        head = train_classifier(config=head_config, train=fit, validation=val, runtime=runtime)
        rows += member_rows(head, "method=head", texts, gold)
        print_table("BANKING77 so far", rows)
    if args.finetune != "none":
        config = TrainConfig(
            method=args.finetune,
            epochs=args.epochs,
            learning_rate=args.lr,
            max_length=64,
            label_smoothing=args.label_smoothing,
            head_warm_start=not args.no_warm_start,
            lexical=True,
            time_budget_s=args.budget_min * 60,
            progress_every=50,
        )
        ft = train_classifier(config=config, train=fit, validation=val, runtime=runtime, progress=report)
        note = (
            f", {ft.stats.epochs_completed:.2f} epochs ({ft.stats.stopped_reason}), lr {args.lr}, "
            f"warm start {not args.no_warm_start}, smoothing {args.label_smoothing}"
        )
        rows += [
            Row(r.name, r.accuracy, r.macro_f1, r.train_s, r.note + note)
            for r in member_rows(ft, f"method={args.finetune}", texts, gold)[1:]
        ]
    print_table(f"BANKING77 (test: {len(test)} rows)", rows)
    print(machine_note())
    if args.out:
        args.out.write_text(json.dumps([r.__dict__ for r in rows], indent=2))


def report(p) -> None:
    print(
        f"  step {p.step}/{p.total_steps} loss={p.loss} val={p.val_metric} eta={p.eta_s} {p.message}",
        flush=True,
    )


if __name__ == "__main__":
    main()
