"""What a LoRA adapter on the shared encoder would cost the two-tower model's item tower, on this CPU.

The two-tower model (``recommender.twotower``) keeps the encoder frozen: item text vectors are
computed once and a small projection is trained over them. A LoRA adapter instead means running the
encoder, forward and backward, over every item text a step touches (the batch's targets, its sampled
negatives and the users' history items: on Online Retail nearly the whole catalogue each step). This
script times one forward and backward pass of all-MiniLM-L6-v2 with LoRA (r 8 on the attention and dense
layers, as ``core.ml.loop`` sets it) over ``--batch`` Online Retail item texts, and a frozen forward pass
for comparison, then prints what one epoch would take.

    OPENBLAS_NUM_THREADS=1 nice .venv/bin/python -m bench.recommender_lora_cost   # --batch 128 --threads 1
"""

import argparse
import os
import time

import torch
from peft import LoraConfig, get_peft_model

from bench.recommender import DEFAULT, read_texts
from core.ml.modeling import encode, load_encoder, load_tokenizer
from core.ml.runtime import base_model_path
from core.ml.types import LORA_TARGETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--steps-per-epoch",
        type=int,
        default=212,
        help="the tower's steps per epoch (Online Retail: 108,236 examples, batch 512)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = list(read_texts(DEFAULT).values())
    folder = base_model_path(None)
    tokenizer = load_tokenizer(folder)
    encoder = load_encoder(folder)
    encoder.requires_grad_(False)
    batch = texts[: args.batch]
    encoder.eval()
    with torch.no_grad():
        encode(encoder, tokenizer, batch, max_length=64, device="cpu")  # warm-up
        started = time.perf_counter()
        encode(encoder, tokenizer, batch, max_length=64, device="cpu")
        frozen = time.perf_counter() - started
    model = get_peft_model(
        encoder, LoraConfig(r=8, lora_alpha=16, target_modules=list(LORA_TARGETS), bias="none")
    )
    model.train()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        vectors = encode(model, tokenizer, batch, max_length=64, device="cpu")
        (vectors @ vectors.T).logsumexp(1).mean().backward()
        times.append(time.perf_counter() - started)
    step = min(times)
    per_item = step / len(batch)
    catalogue = len(texts)
    print(f"load average {os.getloadavg()[0]:.1f}; threads {args.threads}; {len(batch)} texts")
    print(f"frozen forward: {frozen:.2f} s ({1000 * frozen / len(batch):.1f} ms per text)")
    print(f"LoRA forward + backward: {step:.2f} s ({1000 * per_item:.1f} ms per text)")
    hours = per_item * catalogue * args.steps_per_epoch / 3600
    print(
        f"a tower step over the whole catalogue ({catalogue} texts): {per_item * catalogue:.0f} s; "
        f"an epoch of {args.steps_per_epoch} steps: {hours:.1f} h"
    )


if __name__ == "__main__":
    main()
