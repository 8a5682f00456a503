"""Finance monitor default models on the twitter financial news validation sets, beside TF-IDF + LR, one run.

The product's default (``finance_monitor.services.defaults``: a head on the frozen MiniLM encoder blended with
TF-IDF, ``method=head, lexical=True``) trained on every row of the shipped de-duplicated training sets
(``finance_monitor/data/twitter_financial_news``; 10% held out as validation for the head's C and the blend
weight, as the product's dataset split does) and scored on the original validation splits (never trained on),
read from ``../shared/data``: all rows, and the rows whose normalised text is unique in the split. Peer:
word + char TF-IDF with logistic regression trained on all shipped rows. Also times the classification of the
validation texts by both models (each its own encoder pass, as the monitor's worker runs them).

Targets (issue 11): sentiment >= 0.91 accuracy, topic >= 0.92; anchor finbert-tone fine-tuned 0.884 / 0.911.

    .venv/bin/python bench/finance_classification.py --threads 2
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Row, machine_note, member_rows, print_table, score, stratified_split, tfidf_lr, timed

ROOT = Path(__file__).resolve().parents[1]


def _build():
    """``finance_monitor/data/twitter_financial_news/build.py``: the label names and the normalisation."""
    import importlib.util

    path = ROOT / "finance_monitor" / "data" / "twitter_financial_news" / "build.py"
    spec = importlib.util.spec_from_file_location("twitter_build", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILD = _build()
SETS, normalise = BUILD.SETS, BUILD.normalise


def shipped(task: str) -> list[tuple[str, str]]:
    import gzip

    path = ROOT / "finance_monitor" / "data" / "twitter_financial_news" / f"{task}_train.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return [(r["text"], r["label"]) for r in csv.DictReader(handle)]


def validation(data: Path, task: str) -> list[tuple[str, str]]:
    folder, _train, valid, names = SETS[task]
    with (data / folder / valid).open(newline="", encoding="utf-8") as handle:
        return [(r["text"], names[r["label"].strip()]) for r in csv.DictReader(handle)]


def unique_rows(rows: list[tuple[str, str]]) -> list[int]:
    """Indices of the rows whose normalised text occurs once in the split."""
    counts: dict[str, int] = {}
    for text, _ in rows:
        counts[normalise(text)] = counts.get(normalise(text), 0) + 1
    return [i for i, (text, _) in enumerate(rows) if counts[normalise(text)] == 1]


def run_task(task: str, args: argparse.Namespace):
    from core.ml.runtime import Runtime
    from core.ml.train import TrainConfig, train_classifier

    runtime = Runtime(base_model_path=args.base_model, device="cpu", threads=args.threads)
    train = shipped(task)
    valid = validation(args.data, task)
    fit, val = stratified_split(train, 0.1, seed=0)
    texts, gold = [t for t, _ in valid], [g for _, g in valid]
    keep = unique_rows(valid)
    print(
        f"\n{task}: train {len(fit)} + validation {len(val)} (shipped), scored on {len(valid)} validation"
        f" rows ({len(keep)} unique); {machine_note()}",
        flush=True,
    )
    peer, peer_s = timed(tfidf_lr, train)
    peer_pred = list(peer.predict(texts))
    rows = [Row(f"{task} peer: TF-IDF + LR (all {len(train)} rows)", *score(gold, peer_pred), peer_s)]
    model = train_classifier(
        config=TrainConfig(method="head", lexical=True), train=fit, validation=val, runtime=runtime
    )
    rows += member_rows(model, f"{task} default (method=head)", texts, gold)
    started = time.perf_counter()
    predicted = [p.label for p in model.predict(texts)]
    seconds = time.perf_counter() - started
    peer_unique = score([gold[i] for i in keep], [peer_pred[i] for i in keep])[0]
    rows.append(
        Row(
            f"{task} default (product), unique-text rows only",
            *score([gold[i] for i in keep], [predicted[i] for i in keep]),
            model.stats.train_seconds,
            f"peer on the same rows: {peer_unique * 100:.2f}%",
        )
    )
    print_table(task, rows)
    return rows, model, seconds, len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base-model", default=None, help="packaged name or folder; default MiniLM-L6")
    parser.add_argument("--tasks", nargs="+", default=["sentiment", "topic"])
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    results, timings = [], []
    for task in args.tasks:
        rows, _model, seconds, n = run_task(task, args)
        results += rows
        timings.append((task, seconds, n))
    print_table("Twitter financial news validation sets", results)
    for task, seconds, n in timings:
        print(
            f"classify {n} validation texts with the {task} model: {seconds:.1f} s"
            f" ({n / seconds:.0f} texts/s)"
        )
    total = sum(s / n for _, s, n in timings)
    print(f"both models, one encoder pass each: {1 / total:.0f} documents/s on {args.threads} threads")
    print(machine_note())


if __name__ == "__main__":
    main()
