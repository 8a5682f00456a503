"""How the finance monitor's models should read web links: kept, replaced by the word "link", or removed.

The product's fast default (a head on the frozen MiniLM encoder blended with TF-IDF, ``method=head,
lexical=True``, as ``finance_monitor.services.defaults`` trains it) is trained on the shipped de-duplicated
twitter financial news rows (``finance_monitor/data/twitter_financial_news``, MIT; 10% held out as the
product's split does) with their texts in one form, and scored on the original validation split (read from
``../shared/data``, never trained on) in a form: accuracy, and the CPU time of classifying the validation
texts (the model's own encoder pass, float, length-sorted batches). Half of these tweets carry a shortened
link (``https://t.co/G9Zdi1boy5``: a dozen word pieces of a random string). Forms:

- ``raw``: the text as it came (what the product read before ``finance_monitor.links``);
- ``word``: each link replaced by the word "link" (``finance_monitor.links.model_text``: what it reads now);
- ``removed``: each link removed.

The pairs: each form trained and scored on itself, and ``raw``-trained models scored on ``word`` texts (an
organisation whose models were trained before the change). Peer: the ``raw`` row, in the same run.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/fm_links.py --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def forms():
    from finance_monitor.links import LINK, model_text

    def removed(text: str) -> str:
        return " ".join(LINK.sub(" ", text).split()) or text

    return {"raw": lambda text: text, "word": model_text, "removed": removed}


def main() -> None:
    from bench.common import machine_note, stratified_split
    from bench.finance_classification import shipped, smoke_slice, validation
    from core.ml.runtime import Runtime
    from core.ml.train import TrainConfig, train_classifier

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tasks", nargs="+", default=["sentiment", "topic"])
    parser.add_argument("--limit", type=int, default=0, help="smoke run: N rows of each set")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    runtime = Runtime(base_model_path=None, device="cpu", threads=args.threads)
    shape = forms()
    pairs = [("raw", "raw"), ("word", "word"), ("removed", "removed"), ("raw", "word")]
    header = "| task | trained on | scored on | accuracy | CPU ms a text | tokens a text | train s |"
    print(f"{header}\n|{'---|' * 7}")
    for task in args.tasks:
        # the texts as they came: each pair puts them in its own form
        train, valid = shipped(task, form=shape["raw"]), validation(args.data, task, form=shape["raw"])
        if args.limit:
            train, valid = smoke_slice(train, args.limit), smoke_slice(valid, args.limit)
        fit, held = stratified_split(train, 0.1, seed=0)
        gold = [label for _, label in valid]
        models = {}
        for trained, scored in pairs:
            if trained not in models:
                form = shape[trained]
                started = time.perf_counter()
                models[trained] = (
                    train_classifier(
                        config=TrainConfig(method="head", lexical=True),
                        train=[(form(t), label) for t, label in fit],
                        validation=[(form(t), label) for t, label in held],
                        runtime=runtime,
                    ),
                    time.perf_counter() - started,
                )
            model, train_s = models[trained]
            texts = [shape[scored](t) for t, _ in valid]
            tokens = sum(len(ids) for ids in model.tokenizer(texts)["input_ids"]) / len(texts)
            started = time.process_time()
            probabilities = model.predict_proba(texts)
            cpu_ms = (time.process_time() - started) / len(texts) * 1000
            predicted = [model.labels[i] for i in probabilities.argmax(1)]
            accuracy = sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)
            print(
                f"| {task} | {trained} | {scored} | {accuracy:.2%} | {cpu_ms:.2f} | {tokens:.1f}"
                f" | {train_s:.0f} |",
                flush=True,
            )
    print(machine_note())


if __name__ == "__main__":
    main()
