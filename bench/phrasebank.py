"""Financial PhraseBank benchmark (positive / neutral / negative): core.ml vs TF-IDF + LR, in one run.

Sentences_50Agree and Sentences_AllAgree, each split 80/20 (stratified, seed 0); 10% of the 80% is held out
as validation (head C, early stopping, blend weight). Anchors: FinBERT 0.86 accuracy / 0.84 F1 on 50Agree and
0.97 / 0.95 on AllAgree (Araci, 2019). The data is CC BY-NC-SA: read from /work/shared, never copied.

    .venv/bin/python bench/phrasebank.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Row, machine_note, member_rows, print_table, score, stratified_split, tfidf_lr, timed


def read_phrasebank(path: Path) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.strip():
            sentence, label = line.strip().rsplit("@", 1)
            rows.append((sentence.strip(), label.strip()))
    return rows


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/financial_phrasebank"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--finetune", default="full", choices=["none", "lora", "full"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--budget-min", type=float, nargs=2, default=[6.0, 3.0], help="50Agree, AllAgree")
    parser.add_argument(
        "--base-model", default=None, help="packaged name (all-mpnet-base-v2) or folder; default MiniLM-L6"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--metric", default="macro_f1", choices=["macro_f1", "accuracy"])
    parser.add_argument("--no-class-weights", action="store_true", help="plain cross-entropy")
    parser.add_argument("--seed", type=int, default=13, help="training seed (the splits always use 0)")
    parser.add_argument("--sets", nargs="+", default=["50Agree", "AllAgree"])
    return parser.parse_args()


def run_set(name: str, rows: list[tuple[str, str]], args: argparse.Namespace, budget_min: float) -> list[Row]:
    from core.ml.runtime import Runtime
    from core.ml.train import TrainConfig, train_classifier

    runtime = Runtime(base_model_path=args.base_model, device="auto", threads=args.threads)
    train_all, test = stratified_split(rows, 0.2, seed=0)
    fit, val = stratified_split(train_all, 0.1, seed=0)
    texts, gold = [t for t, _ in test], [g for _, g in test]
    print(
        f"\n{name}: train {len(fit)} + validation {len(val)}, test {len(test)}; {machine_note()}", flush=True
    )
    peer, peer_s = timed(tfidf_lr, train_all)
    out = [
        Row(
            f"{name} peer: TF-IDF + LR (all {len(train_all)} rows)", *score(gold, peer.predict(texts)), peer_s
        )
    ]
    head = train_classifier(
        config=TrainConfig(method="head", lexical=True), train=fit, validation=val, runtime=runtime
    )
    out += member_rows(head, f"{name} method=head", texts, gold)
    if args.finetune != "none":
        config = TrainConfig(
            method=args.finetune,
            epochs=args.epochs,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            metric=args.metric,
            seed=args.seed,
            class_weights=not args.no_class_weights,
            label_smoothing=0.1,
            lexical=True,
            time_budget_s=budget_min * 60,
            progress_every=1000,
        )
        ft = train_classifier(config=config, train=fit, validation=val, runtime=runtime)
        note = (
            f", {ft.stats.epochs_completed:.2f} epochs ({ft.stats.stopped_reason}), lr {args.lr}, "
            f"metric {args.metric}, class weights {not args.no_class_weights}"
        )
        out += [
            Row(r.name, r.accuracy, r.macro_f1, r.train_s, r.note + note)
            for r in member_rows(ft, f"{name} method={args.finetune}", texts, gold)[1:]
        ]
    print_table(name, out)
    return out


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    results: list[Row] = []
    for name, budget in zip(args.sets, args.budget_min, strict=False):
        results += run_set(name, read_phrasebank(args.data / f"Sentences_{name}.txt"), args, budget)
    print_table("Financial PhraseBank (20% test split)", results)
    print(machine_note())


if __name__ == "__main__":
    main()
