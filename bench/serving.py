"""Serving benchmark: our predictor (float, dynamic int8) vs a plain transformers classification pipeline.

Same fine-tuned model, same texts (BANKING77 test rows), same thread count, sequential requests of 1, 8 and 32
texts. Reports texts/s and p50/p99 latency per request, and accuracy on all test rows for each path.

    .venv/bin/python bench/serving.py --threads 2
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine_note, score


def read_rows(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [(row["text"], row["category"]) for row in csv.DictReader(handle)]


def per_label(rows: list[tuple[str, str]], k: int) -> list[tuple[str, str]]:
    seen: dict[str, int] = {}
    out = []
    for text, label in rows:
        if seen.get(label, 0) < k:
            seen[label] = seen.get(label, 0) + 1
            out.append((text, label))
    return out


def train_quick_artifact(rows: list[tuple[str, str]], directory: Path, threads: int) -> None:
    """A LoRA model trained for one epoch on 30 rows per intent: enough to compare serving paths."""
    from core.ml.artifact import save_artifact
    from core.ml.runtime import Runtime
    from core.ml.train import TrainConfig, train_classifier

    config = TrainConfig(method="lora", epochs=1, learning_rate=1e-3, max_length=64, progress_every=1000)
    model = train_classifier(
        config=config,
        train=per_label(rows, 30),
        validation=[],
        runtime=Runtime(device="cpu", threads=threads),
    )
    save_artifact(model=model, directory=directory, extra_manifest={})


def hf_pipeline(directory: Path):
    """A transformers pipeline over the same weights: a PreTrainedModel wrapper around our TextClassifier."""
    from transformers import BertConfig, BertPreTrainedModel, pipeline
    from transformers.modeling_outputs import SequenceClassifierOutput

    from core.ml.artifact import load_model
    from core.ml.runtime import Runtime

    model, tokenizer, manifest = load_model(directory=directory, runtime=Runtime(device="cpu"))

    class MeanPoolClassifier(BertPreTrainedModel):
        def __init__(self, config: BertConfig) -> None:
            super().__init__(config)
            self.inner = model

        def forward(self, input_ids=None, attention_mask=None, **_kwargs):
            return SequenceClassifierOutput(
                logits=self.inner(input_ids=input_ids, attention_mask=attention_mask)
            )

    config = BertConfig(**model.encoder.config.to_dict())
    config.id2label = dict(enumerate(manifest["labels"]))
    config.label2id = {v: k for k, v in config.id2label.items()}
    wrapper = MeanPoolClassifier(config).eval()
    return pipeline("text-classification", model=wrapper, tokenizer=tokenizer, device="cpu")


def measure(call: Callable[[list[str]], list[str]], texts: Sequence[str], batch: int) -> dict[str, float]:
    call(list(texts[:batch]))  # warm-up
    latencies = []
    started = time.perf_counter()
    for i in range(0, len(texts) - batch + 1, batch):
        t0 = time.perf_counter()
        call(list(texts[i : i + batch]))
        latencies.append((time.perf_counter() - t0) * 1000)
    total = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    return {
        "texts_per_s": len(latencies) * batch / total,
        "p50_ms": statistics.median(latencies),
        "p99_ms": p99,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/banking77"))
    parser.add_argument(
        "--artifact", type=Path, default=None, help="a saved version; default: train a quick one"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=640, help="texts timed per batch size and system")
    return parser.parse_args()


def systems(directory: Path, threads: int) -> dict[str, Callable[[list[str]], list[str]]]:
    from core.ml.runtime import Runtime
    from core.ml.serving import load_predictor

    runtime = Runtime(device="cpu", threads=threads)
    pipe = hf_pipeline(directory)
    out: dict[str, Callable[[list[str]], list[str]]] = {
        "transformers pipeline (peer)": lambda t: [r["label"] for r in pipe(t, batch_size=len(t))]
    }
    for quantized in (False, True):
        for trace in (False, True):
            p = load_predictor(
                directory=directory, version="b", runtime=runtime, quantized=quantized, trace=trace
            )
            name = (
                f"core.ml Predictor, {'int8' if quantized else 'float32'}, {'traced' if trace else 'eager'}"
            )
            out[name] = lambda t, p=p: [x.label for x in p.predict(t)]
    return out


def main() -> None:
    args = parse_args()
    import torch

    torch.set_num_threads(args.threads)
    train, test = read_rows(args.data / "train.csv"), read_rows(args.data / "test.csv")
    directory = args.artifact
    if directory is None:
        directory = Path(tempfile.mkdtemp()) / "bench-version"
        started = time.perf_counter()
        train_quick_artifact(train, directory, args.threads)
        print(f"trained a quick LoRA model in {time.perf_counter() - started:.0f}s", flush=True)
    texts, gold = [t for t, _ in test], [g for _, g in test]
    timed_texts = texts[:: max(1, len(texts) // args.texts)][: args.texts]
    print(f"{machine_note()}, torch threads {torch.get_num_threads()}, {len(timed_texts)} timed texts\n")
    print("| system | batch | texts/s | p50 ms | p99 ms | accuracy (3,080 test rows) |\n" + "|---" * 6 + "|")
    for name, call in systems(directory, args.threads).items():
        accuracy = score(
            gold, [label for i in range(0, len(texts), 64) for label in call(texts[i : i + 64])]
        )[0]
        for batch in (1, 8, 32):
            m = measure(call, timed_texts, batch)
            print(
                f"| {name} | {batch} | {m['texts_per_s']:.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | "
                f"{accuracy * 100:.2f}% |",
                flush=True,
            )


if __name__ == "__main__":
    main()
