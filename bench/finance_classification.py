"""Finance monitor default models on the twitter financial news validation sets, beside TF-IDF + LR, one run.

The product's fast default (a head on the frozen MiniLM encoder blended with TF-IDF, ``method=head,
lexical=True``) and the fine-tuned default (``FINE_TUNED_CONFIG`` of ``finance_monitor.services.defaults``:
the encoder fine-tuned, blended with TF-IDF, confidence calibrated by a temperature fitted on the held-out
rows), each trained on every row of the shipped de-duplicated training sets
(``finance_monitor/data/twitter_financial_news``; 10% held out as validation for the head's C, early stopping,
the blend weight and the temperature, as the product's dataset split does) and scored on the original
validation splits (never trained on), read from ``../shared/data``: all rows, and the rows whose normalised
text is unique in the split. Peer: word + char TF-IDF with logistic regression trained on all shipped rows.
For sentiment, the same models (trained on the twitter set only, never on PhraseBank) are also scored on all
of the Financial PhraseBank (50%-agreement and all-agree sentences, read from ``../shared/data``, CC BY-NC-SA:
evaluation only), with ECE (15 equal-width bins, as ``core.ml.evaluate``). Also times the classification of
the validation texts by the first model (its own encoder pass).

Targets (issue 11): sentiment >= 0.91 accuracy, topic >= 0.92; anchor finbert-tone fine-tuned 0.884 / 0.911;
the licence-clean default >= 0.82 accuracy on PhraseBank 50%-agreement with ECE < 0.05.

    .venv/bin/python bench/finance_classification.py --threads 2
    .venv/bin/python bench/finance_classification.py --threads 1 --tasks topic  # one task per process
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import Row, machine_note, print_table, score, stratified_split, tfidf_lr, timed

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


def shipped(task: str, form: Callable[[str], str] | None = None) -> list[tuple[str, str]]:
    """The shipped training rows, their texts in ``form`` (by default as the monitor's models read a
    document: ``finance_monitor.links.model_text``, links as the word "link"), for the models and the peer
    alike."""
    import gzip

    from finance_monitor.links import model_text

    form = form or model_text
    path = ROOT / "finance_monitor" / "data" / "twitter_financial_news" / f"{task}_train.csv.gz"
    with gzip.open(path, "rt", encoding="utf-8", newline="") as handle:
        return [(form(r["text"]), r["label"]) for r in csv.DictReader(handle)]


def validation(data: Path, task: str, form: Callable[[str], str] | None = None) -> list[tuple[str, str]]:
    """The original validation split, its texts in ``form`` as ``shipped``."""
    from finance_monitor.links import model_text

    form = form or model_text
    folder, _train, valid, names = SETS[task]
    with (data / folder / valid).open(newline="", encoding="utf-8") as handle:
        return [(form(r["text"]), names[r["label"].strip()]) for r in csv.DictReader(handle)]


def smoke_slice(rows: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """``n`` rows spread evenly over ``rows`` (the shipped files are sorted by label: the first ``n`` rows of
    one are a single label): a smoke run's slice, every label kept where ``n`` allows."""
    return rows[:: max(1, len(rows) // n)][:n]


def unique_rows(rows: list[tuple[str, str]]) -> list[int]:
    """Indices of the rows whose normalised text occurs once in the split."""
    counts: dict[str, int] = {}
    for text, _ in rows:
        counts[normalise(text)] = counts.get(normalise(text), 0) + 1
    return [i for i, (text, _) in enumerate(rows) if counts[normalise(text)] == 1]


def probabilities(model, texts: list[str]):
    """The neural member's and the lexical member's probabilities (numpy; lexical None without one), each
    uncalibrated: the blend and the temperature are applied from these without another encoder pass."""
    lexical, temperature = model.lexical, model.temperature
    model.lexical, model.temperature = None, 1.0
    try:
        neural = model.predict_proba(texts).numpy()
    finally:
        model.lexical, model.temperature = lexical, temperature
    return neural, None if lexical is None else lexical.predict_proba(texts)


def product_proba(model, neural, lexical, *, calibrated: bool = True):
    from core.ml.calibration import apply_temperature

    probs = neural if lexical is None else model.blend_weight * neural + (1 - model.blend_weight) * lexical
    return apply_temperature(probs, model.temperature) if calibrated else probs


def scored(name: str, labels, probs, gold: list[str], train_s: float, note: str = "") -> Row:
    from core.ml.evaluate import expected_calibration_error

    predicted = [labels[i] for i in probs.argmax(1)]
    ece = expected_calibration_error(
        probs.max(1).tolist(), [p == g for p, g in zip(predicted, gold, strict=True)]
    )
    return Row(name, *score(gold, predicted), train_s, f"ECE {ece:.3f}" + (f"; {note}" if note else ""))


def model_rows(model, name: str, probs, gold: list[str], keep: list[int] | None = None) -> list[Row]:
    """Members alone, the product (blend, calibrated when the model has a temperature), and the uncalibrated
    product when it has one; ``keep`` adds the product on those rows only."""
    neural, lexical = probs
    labels, seconds = model.labels, model.stats.train_seconds
    rows = (
        [] if lexical is None else [scored(f"{name}: lexical member alone", labels, lexical, gold, seconds)]
    )
    note = f"head C={model.stats.head_c}"
    if model.config.method != "head":
        stats = model.stats
        lr = model.config.effective_learning_rate
        note = f"{stats.epochs_completed:.2f} epochs ({stats.stopped_reason}), lr {lr}"
    rows.append(scored(f"{name}: neural member alone", labels, neural, gold, seconds, note))
    product = product_proba(model, neural, lexical)
    blend_note = f"w={model.blend_weight:.2f}" if lexical is not None else ""
    if model.temperature != 1.0:
        raw = product_proba(model, neural, lexical, calibrated=False)
        rows.append(scored(f"{name}: product before calibration", labels, raw, gold, seconds, blend_note))
        blend_note += f", T={model.temperature:.3f}"
    rows.append(scored(f"**{name} (product)**", labels, product, gold, seconds, blend_note))
    if keep is not None:
        rows.append(
            scored(
                f"{name} (product), unique-text rows only",
                labels,
                product[keep],
                [gold[i] for i in keep],
                seconds,
            )
        )
    return rows


def save_probs(path: Path, model, sets: dict) -> None:
    """The members' probabilities, the blend weight and the temperature, for analysis after the run (a
    set given as rows is predicted here; as (probabilities, rows) it is saved as given)."""
    import numpy as np

    out = {"labels": np.array(model.labels), "w": model.blend_weight, "T": model.temperature}
    for name, value in sets.items():
        probs, rows = (
            value if isinstance(value, tuple) else (probabilities(model, [t for t, _ in value]), value)
        )
        out[f"{name}_neural"] = probs[0]
        if probs[1] is not None:
            out[f"{name}_lexical"] = probs[1]
        index = {label: i for i, label in enumerate(model.labels)}
        out[f"{name}_gold"] = np.array([index.get(g, -1) for _, g in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)


def fine_tune_config(args: argparse.Namespace):
    """``FINE_TUNED_CONFIG`` of ``finance_monitor.services.defaults`` (read from its source: that module
    needs Django), with the method, epochs, learning rate and time budget this run was given."""
    import ast

    from core.ml.train import TrainConfig

    source = (ROOT / "finance_monitor" / "services" / "defaults.py").read_text(encoding="utf-8")
    node = next(
        n
        for n in ast.parse(source).body
        if isinstance(n, ast.AnnAssign | ast.Assign)
        and "FINE_TUNED_CONFIG" in ast.unparse(n.target if isinstance(n, ast.AnnAssign) else n.targets[0])
    )
    config = dict(ast.literal_eval(node.value))
    config.update(method=args.finetune, epochs=args.epochs, time_budget_s=args.budget_min * 60)
    if args.lr is not None:
        config["learning_rate"] = args.lr
    config["progress_every"] = 100
    return TrainConfig(**config)


def phrasebank(args: argparse.Namespace) -> tuple[list[tuple[str, str]], list[int]]:
    """All 50%-agreement sentences and the indices of those in the all-agree file."""
    from bench.phrasebank import read_phrasebank

    rows = read_phrasebank(args.phrasebank / "Sentences_50Agree.txt")
    all_agree = set(read_phrasebank(args.phrasebank / "Sentences_AllAgree.txt"))
    return rows, [i for i, row in enumerate(rows) if row in all_agree]


def phrasebank_rows(models: list[tuple[str, object]], peer, args: argparse.Namespace) -> list[Row]:
    from bench.common import aligned_proba

    rows, agree = phrasebank(args)
    if args.limit:
        rows, agree = rows[: args.limit], [i for i in agree if i < args.limit]
    texts, gold = [t for t, _ in rows], [g for _, g in rows]
    print(
        f"\nPhraseBank: {len(rows)} 50%-agreement sentences, {len(agree)} all-agree; {machine_note()}",
        flush=True,
    )
    out = []
    labels = models[0][1].labels
    peer_probs = aligned_proba(peer, texts, labels)
    for subset, idx in (("50Agree", list(range(len(rows)))), ("AllAgree", agree)):
        out.append(
            scored(
                f"PhraseBank {subset}: peer TF-IDF + LR", labels, peer_probs[idx], [gold[i] for i in idx], 0
            )
        )
    for number, (name, model) in enumerate(models):
        probs = probabilities(model, texts)
        if args.save_probs:
            save_probs(args.save_probs / f"phrasebank-{number}.npz", model, {"pb50": (probs, rows)})
        for subset, idx in (("50Agree", list(range(len(rows)))), ("AllAgree", agree)):
            picked = (probs[0][idx], None if probs[1] is None else probs[1][idx])
            out += [
                Row(f"PhraseBank {subset}: {r.name}", r.accuracy, r.macro_f1, r.train_s, r.note)
                for r in model_rows(model, name, picked, [gold[i] for i in idx])
            ]
    return out


def run_task(task: str, args: argparse.Namespace):
    from bench.common import aligned_proba
    from core.ml.runtime import Runtime
    from core.ml.train import TrainConfig, train_classifier

    runtime = Runtime(base_model_path=args.base_model, device="cpu", threads=args.threads)
    train = shipped(task)
    valid = validation(args.data, task)
    if args.limit:  # a smoke run of the script itself, not a measurement
        train, valid = smoke_slice(train, args.limit), smoke_slice(valid, args.limit)
    fit, val = stratified_split(train, 0.1, seed=0)
    texts, gold = [t for t, _ in valid], [g for _, g in valid]
    keep = unique_rows(valid)
    print(
        f"\n{task}: train {len(fit)} + validation {len(val)} (shipped), scored on {len(valid)} validation"
        f" rows ({len(keep)} unique); {machine_note()}",
        flush=True,
    )
    peer, peer_s = timed(tfidf_lr, train)
    models: list[tuple[str, object]] = []
    rows: list[Row] = []
    if not args.skip_head:
        head = train_classifier(
            config=TrainConfig(method="head", lexical=True), train=fit, validation=val, runtime=runtime
        )
        models.append((f"{task} fast default (method=head)", head))
    if args.finetune != "none":
        config = fine_tune_config(args)
        print(f"{task}: fine-tuning {config}", flush=True)
        tuned = train_classifier(
            config=config, train=fit, validation=val, runtime=runtime, progress=_progress(task)
        )
        models.append((f"{task} fine-tuned default (method={args.finetune})", tuned))
    labels = models[0][1].labels
    peer_probs = aligned_proba(peer, texts, labels)
    rows.append(scored(f"{task} peer: TF-IDF + LR (all {len(train)} rows)", labels, peer_probs, gold, peer_s))
    rows.append(
        scored(
            f"{task} peer, unique-text rows only", labels, peer_probs[keep], [gold[i] for i in keep], peer_s
        )
    )
    seconds = None
    for number, (name, model) in enumerate(models):
        started = time.perf_counter()
        probs = probabilities(model, texts)
        seconds = seconds or time.perf_counter() - started
        rows += model_rows(model, name, probs, gold, keep)
        if args.save_probs:
            save_probs(args.save_probs / f"{task}-{number}.npz", model, {"test": (probs, valid), "val": val})
    print_table(task, rows)
    if task == "sentiment" and args.phrasebank is not None:
        extra = phrasebank_rows(models, peer, args)
        print_table("Financial PhraseBank (all sentences; models trained on the twitter set only)", extra)
        rows += extra
    return rows, seconds, len(texts)


def _progress(task: str):
    def report(progress) -> None:
        if progress.message or progress.step % 100 == 0:
            eta = f", ETA {progress.eta_s:.0f} s" if progress.eta_s is not None else ""
            print(
                f"  {task} step {progress.step}/{progress.total_steps} loss {progress.loss} "
                f"val {progress.val_metric}{eta} {progress.message}",
                flush=True,
            )

    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--phrasebank", type=Path, default=ROOT.parent / "shared" / "data" / "financial_phrasebank"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--base-model", default=None, help="packaged name or folder; default MiniLM-L6")
    parser.add_argument("--tasks", nargs="+", default=["sentiment", "topic"])
    parser.add_argument("--finetune", default="full", choices=["none", "lora", "full"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=None, help="default: FINE_TUNED_CONFIG's")
    parser.add_argument("--budget-min", type=float, default=60.0, help="fine-tuning time budget per task")
    parser.add_argument(
        "--skip-head", action="store_true", help="leave out the fast default (saves its time)"
    )
    parser.add_argument("--save-probs", type=Path, default=None, help="folder for the probabilities (npz)")
    parser.add_argument("--limit", type=int, default=0, help="smoke run: N rows of each set")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    results, timings = [], []
    for task in args.tasks:
        rows, seconds, n = run_task(task, args)
        results += rows
        if seconds:
            timings.append((task, seconds, n))
    print_table("Twitter financial news validation sets (and PhraseBank)", results)
    for task, seconds, n in timings:
        print(
            f"classify {n} validation texts with the {task} model: {seconds:.1f} s"
            f" ({n / seconds:.0f} texts/s)"
        )
    if timings:
        total = sum(s / n for _, s, n in timings)
        print(f"these models, one encoder pass each: {1 / total:.0f} documents/s on {args.threads} threads")
    print(machine_note())


if __name__ == "__main__":
    main()
