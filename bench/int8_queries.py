"""Knowledge-base search with the question's vector from the intent model's int8 encoder, beside float.

A chat question is embedded by the tenant's intent model (a head on the frozen base encoder, served in row
int8 where int8 pays: ``core.registry.services.serving.serves_int8``); the knowledge base's passages are
stored as the base encoder's float vectors. Searching with the int8 pass's vector (``VECTOR_INT8_QUERIES``,
``core.vectors.embedding_reuse``) saves the float pass a question otherwise costs; this bench measures what
it changes, the float query being the peer, in the same run:

- recall@1 and recall@3 of the right article (one passage per article, as ``kb_search`` gives them), for the
  product's hybrid ranking (BM25 and cosine fused by RRF) and cosine alone;
- the bot's decision (``customer_service.services.answering``: the first hybrid hit whose cosine reaches
  ``--threshold`` answers, else no article): the share of questions decided the same way with both vectors,
  and the share answered by the right article;
- how far the vectors are apart: the cosine between a question's float and int8 vectors (lowest and median),
  and the largest change of the answering passage's cosine;
- the CPU time of embedding one question alone (what the reuse saves).

Questions: ``bench/grounded_questions.json`` (written for the demo knowledge base; the unanswerable ones
count in the decisions only), and the shipped Bitext requests of the intents that have an answer template
(the template, taken as an article titled after its intent, is the right article), sampled with a fixed seed.
The knowledge base is ``bench/grounded.py``'s: the demo's articles and every template as an article.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/int8_queries.py --bitext 2000
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")

import django  # noqa: E402

django.setup()

from bench.common import machine_note  # noqa: E402
from bench.grounded import knowledge_base, per_article, rankings  # noqa: E402
from core.ml.embedder import embed_all  # noqa: E402
from core.ml.grounding import BM25  # noqa: E402
from core.ml.quantize import matmul_kernel, quantize_rows_int8  # noqa: E402
from core.ml.retrieval import load_base_embedder  # noqa: E402
from core.ml.runtime import Runtime  # noqa: E402
from customer_service.demo import ANSWERS, bitext_dataset_csv  # noqa: E402

QUESTIONS = ROOT / "bench" / "grounded_questions.json"


def title_of(intent: str) -> str:
    return intent.replace("_", " ").capitalize()  # as bench/grounded.py's knowledge base titles templates


def decision(
    top3: list[int], qvec: np.ndarray, matrix: np.ndarray, threshold: float
) -> tuple[int | None, float]:
    """The passage the bot answers with (the first of the top three at or above the threshold), and its
    cosine (the best cosine when none reaches it)."""
    cosines = [float(matrix[j] @ qvec) for j in top3]
    for j, c in zip(top3, cosines, strict=True):
        if c >= threshold:
            return j, c
    return None, max(cosines, default=0.0)


def questions(bitext: int, seed: int) -> dict[str, list[tuple[str, str | None]]]:
    written = [(q["q"], q["article"]) for q in json.loads(QUESTIONS.read_text())["questions"]]
    reader = csv.DictReader(io.StringIO(bitext_dataset_csv().decode()))
    rows = [(r["text"], title_of(r["label"])) for r in reader if r["label"] in ANSWERS]
    random.Random(seed).shuffle(rows)
    sampled = f"Bitext, {min(bitext, len(rows))} requests"
    return {"written (grounded_questions.json)": written, sampled: rows[:bitext]}


def one_text_ms(embed, texts: list[str]) -> float:
    times = []
    for text in texts:
        started = time.process_time()
        embed([text])
        times.append((time.process_time() - started) * 1000)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bitext", type=int, default=2000, help="Bitext requests sampled")
    parser.add_argument("--threshold", type=float, default=0.5, help="the bot's retrieval_threshold")
    parser.add_argument("--max-length", type=int, default=128, help="the intent model's token limit")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    runtime = Runtime(threads=args.threads, device="cpu")
    embedder = load_base_embedder(runtime=runtime)
    int8_encoder = quantize_rows_int8(embedder.encoder)
    int8_encoder.eval()
    passages = knowledge_base()
    matrix = np.asarray(embedder.embed([p for _, p in passages]), dtype=np.float32)
    bm25 = BM25(list(range(len(passages))), [p for _, p in passages])
    print(
        f"knowledge base: {len({t for t, _ in passages})} articles, {len(passages)} passages; int8 kernel "
        f"{matmul_kernel('auto')}; threshold {args.threshold}; {machine_note()}"
    )

    def int8_embed(texts: list[str]) -> np.ndarray:
        return embed_all(int8_encoder, embedder.tokenizer, texts, args.max_length, "cpu")

    print(
        "| questions | query vector | hybrid recall@1 | hybrid recall@3 | cosine recall@1 "
        "| answered by the right article | answered | same decision as float |"
    )
    print("|---|---|---|---|---|---|---|---|")
    notes = []
    for name, rows in questions(args.bitext, args.seed).items():
        texts = [q for q, _ in rows]
        vectors = {"float (peer)": embedder.embed(texts), "int8 (intent pass)": int8_embed(texts)}
        decided: dict[str, list[int | None]] = {}
        for kind, qvecs in vectors.items():
            recall = {"hybrid": [0, 0], "dense": [0, 0]}
            answered = right = 0
            choices: list[int | None] = []
            answerable = 0
            for (text, article), qvec in zip(rows, qvecs, strict=True):
                ranks = rankings(text, qvec, matrix, bm25)
                tops = {mode: per_article(ranks[mode], passages, 3) for mode in ("hybrid", "dense")}
                chosen, _ = decision(tops["hybrid"], qvec, matrix, args.threshold)
                choices.append(chosen)
                answered += chosen is not None
                if article is None:
                    continue
                answerable += 1
                right += chosen is not None and passages[chosen][0] == article
                for mode, top in tops.items():
                    titles = [passages[j][0] for j in top]
                    recall[mode][0] += titles[:1] == [article]
                    recall[mode][1] += article in titles
            decided[kind] = choices
            same = np.mean([a == b for a, b in zip(choices, decided["float (peer)"], strict=True)])
            print(
                f"| {name} | {kind} | {recall['hybrid'][0] / answerable:.3f} | "
                f"{recall['hybrid'][1] / answerable:.3f} | {recall['dense'][0] / answerable:.3f} | "
                f"{right / answerable:.3f} | {answered / len(rows):.3f} | {same:.4f} |"
            )
        agree = np.sum(vectors["float (peer)"] * vectors["int8 (intent pass)"], axis=1)
        shifts = [
            abs(float(matrix[j] @ f) - float(matrix[j] @ q))
            for j, f, q in zip(
                decided["float (peer)"], vectors["float (peer)"], vectors["int8 (intent pass)"], strict=True
            )
            if j is not None
        ]
        notes.append(
            f"{name}: float vs int8 question vectors, cosine lowest {agree.min():.5f}, median "
            f"{np.median(agree):.5f}; the answering passage's cosine moved by at most "
            f"{max(shifts, default=0):.4f}"
        )
    print()
    for note in notes:
        print(note)
    sample = [q for q, _ in questions(200, args.seed + 1)["Bitext, 200 requests"]]
    float_ms, int8_ms = one_text_ms(embedder.embed, sample), one_text_ms(int8_embed, sample)
    print(
        f"one question alone, CPU ms (median of {len(sample)}): float {float_ms:.2f}, int8 {int8_ms:.2f} "
        f"(the reuse spends neither: the intent pass made it); {machine_note()}"
    )


if __name__ == "__main__":
    main()
