"""Grounded answers from the knowledge base: retrieval recall, faithfulness, declines and latency.

The knowledge base is the demo's (``customer_service/demo.py``): its three articles and each of its answer
templates taken as an article (titled after its intent), cut into passages by the product's ``chunk_text``.
The questions (``bench/grounded_questions.json``) were written for it: answerable ones name their article
and words a correct answer contains; the rest are about things no article covers.

1. Retrieval, one passage per article as ``kb_search`` gives them: recall@1 and recall@3 of the right
   article for hybrid (BM25 and cosine rankings fused by RRF, the product's default), cosine alone (the
   peer: the product before) and BM25 alone.
2. Grounded answers (``core.ml.generator``: SmolLM2-135M-Instruct Q4 GGUF through transformers, greedy, on
   the top ``--passages`` hybrid passages), checked by ``core.ml.grounding.answer_check``, gated like the bot
   (nothing is generated when the best cosine is under ``--threshold``: the question is handed off).
   Printed beside the peer in the same run, the extractive article answer (the passage itself, what the bot
   gives with the setting off): answered share and correct share (an expected word in the answer) on the
   answerable questions, declines on the others.
   Faithfulness, judged by a rule (no NLI model here): an answer is *unsupported* when one of its content
   words (stopwords dropped, light stemming) or numbers is not in the passages it was given. Strict: a
   paraphrase ("purchase" for "buy") counts as unsupported, and a wrong statement made of the passages' own
   words ("open on Sunday from 9am") passes; so the answers are also written out for reading by a person
   (``--out``). Counted twice: on the model's raw answers, and on what the bot sends after the check.
3. Latency of a generation: first token and whole answer, p50/p95 (one thread; load of the machine shown).

    PYTHONPATH=. DJANGO_SETTINGS_MODULE=core.settings HF_HUB_OFFLINE=1 .venv/bin/python bench/grounded.py \
        --threads 1 --out var/bench/grounded_answers.jsonl
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import django  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django.setup()

from bench.common import machine_note  # noqa: E402
from core.ml.generator import load_generator  # noqa: E402
from core.ml.grounding import BM25, answer_check, outcome, prompt_messages, rrf_fuse, support  # noqa: E402
from core.ml.retrieval import load_base_embedder  # noqa: E402
from core.ml.runtime import Runtime  # noqa: E402
from customer_service.demo import ANSWERS, ARTICLES  # noqa: E402
from customer_service.services.knowledge import chunk_text  # noqa: E402

QUESTIONS = Path(__file__).with_name("grounded_questions.json")
FLOORS = (0.75, 1.0)  # the answer check's support floors compared


def knowledge_base() -> list[tuple[str, str]]:
    """(article title, passage) for the demo's articles and templates-as-articles."""
    articles = list(ARTICLES) + [
        (intent.replace("_", " ").capitalize(), body) for intent, body in ANSWERS.items()
    ]
    return [(title, passage) for title, body in articles for passage in chunk_text(f"{title}\n\n{body}")]


def per_article(ranking: list[int], passages: list[tuple[str, str]], k: int) -> list[int]:
    seen, out = set(), []
    for i in ranking:
        if passages[i][0] not in seen:
            seen.add(passages[i][0])
            out.append(i)
        if len(out) == k:
            break
    return out


def rankings(question: str, qvec: np.ndarray, matrix: np.ndarray, bm25: BM25) -> dict[str, list[int]]:
    cos = matrix @ qvec
    dense = [int(i) for i in np.argsort(-cos, kind="stable")[:20]]
    lexical = [int(key) for key, _ in bm25.top(question, 20)]
    return {
        "hybrid": [int(k) for k, _ in rrf_fuse([dense, lexical])],
        "dense": dense,
        "bm25": lexical,
    }


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--passages", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=0.5, help="retrieval_threshold (cosine)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--floor", type=float, default=1.0, help="CS_GROUNDED_SUPPORT_FLOOR")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    runtime = Runtime(threads=args.threads, device="cpu")
    data = json.loads(QUESTIONS.read_text())["questions"]
    passages = knowledge_base()
    print(
        f"knowledge base: {len({t for t, _ in passages})} articles, {len(passages)} passages; "
        f"{len(data)} questions ({sum(q['article'] is not None for q in data)} answerable); {machine_note()}"
    )

    embedder = load_base_embedder(runtime=runtime)
    matrix = np.asarray(embedder.embed([p for _, p in passages]), dtype=np.float32)
    qvecs = np.asarray(embedder.embed([q["q"] for q in data]), dtype=np.float32)
    bm25 = BM25(list(range(len(passages))), [p for _, p in passages])

    answerable = [i for i, q in enumerate(data) if q["article"]]
    print("\n1. retrieval: the right article among the top k (one passage per article)")
    print(f"{'ranking':<8} {'recall@1':>9} {'recall@3':>9}")
    ranked = [rankings(q["q"], qvecs[i], matrix, bm25) for i, q in enumerate(data)]
    for name in ("hybrid", "dense", "bm25"):
        hits = [[passages[j][0] for j in per_article(ranked[i][name], passages, 3)] for i in answerable]
        r1 = np.mean([h[:1] == [data[i]["article"]] for h, i in zip(hits, answerable, strict=True)])
        r3 = np.mean([data[i]["article"] in h for h, i in zip(hits, answerable, strict=True)])
        print(f"{name:<8} {r1:>9.3f} {r3:>9.3f}")

    started = time.perf_counter()
    generator = load_generator(runtime=runtime)
    print(f"\ngenerator loaded in {time.perf_counter() - started:.1f} s; {machine_note()}")
    rows = []
    for i, q in enumerate(data):
        top = per_article(ranked[i]["hybrid"], passages, 3)
        cosines = [float(matrix[j] @ qvecs[i]) for j in top]
        gate = next((n for n, c in enumerate(cosines) if c >= args.threshold), None)
        order = top if gate is None else [top[gate]] + [j for j in top if j != top[gate]]
        given = [passages[j][1] for j in order[: args.passages]]
        generation = generator.generate(prompt_messages(q["q"], given), max_new_tokens=args.max_tokens)
        check = answer_check(generation.text, given, question=q["q"], floor=args.floor)
        checks = {f: answer_check(generation.text, given, question=q["q"], floor=f) for f in FLOORS}
        _share, raw_missing, raw_numbers = support(generation.text, given)
        rows.append(
            {
                "q": q["q"],
                "article": q["article"],
                "expect": q["expect"],
                "gated": gate is None,
                "cosine": max(cosines),
                "given": [passages[j][0] for j in order[: args.passages]],
                "raw": generation.text,
                "answer": check.answer,
                "declined": check.declined,
                "said_unknown": check.said_unknown,
                "reason": check.reason,
                "raw_unsupported": bool(raw_missing or raw_numbers) and not check.said_unknown,
                "sent_unsupported": (not check.declined) and bool(support(check.answer, given)[1]),
                "extract": given[0],
                "first_s": generation.first_token_s,
                "total_s": generation.total_s,
                "tokens": generation.tokens,
                "check": check,
                "checks": checks,
            }
        )
        state = "gated" if gate is None else ("refused" if check.declined else "answered")
        print(f"  [{state} cos={max(cosines):.2f}] {q['q']} -> {generation.text!r}")

    def correct(text: str, expect: list[str]) -> bool:
        return any(e.lower() in text.lower() for e in expect)

    ans = [r for r in rows if r["article"]]
    una = [r for r in rows if not r["article"]]
    generated = [r for r in rows if not r["gated"]]
    spoke = [r for r in generated if not r["said_unknown"]]
    sent = [r for r in generated if not r["declined"]]
    print(
        f"\n2. answers (retrieval gate: best cosine >= {args.threshold}, else hand-off; {args.passages} "
        "passages given).\n   policy: what the bot sends after the check (core.ml.grounding.outcome); "
        "'confident' = CS_GROUNDED_CONFIDENT"
    )
    header = f"{'policy':<40} {'answered':>9} {'correct':>8} {'generated':>10} {'declined (not covered)':>23}"
    print(header)

    def policy_row(name: str, act, floor: float = 1.0) -> None:
        answered = correct_n = generated_n = 0
        for r in ans:
            what = "gate" if r["gated"] else act(r)
            if what in ("answer", "article"):
                answered += 1
                text = r["checks"][floor].answer if what == "answer" else r["extract"]
                correct_n += correct(text, r["expect"])
                generated_n += what == "answer"
        declined = sum(r["gated"] or act(r) == "decline" for r in una)
        print(
            f"{name:<40} {answered / len(ans):>9.3f} {correct_n / len(ans):>8.3f} "
            f"{generated_n / len(ans):>10.3f} {declined / len(una):>23.3f}"
        )

    policy_row("article answer (peer: the setting off)", lambda r: "article")
    for floor in FLOORS:
        policy_row(
            f"floor {floor}: any refusal declines",
            lambda r, f=floor: outcome(r["checks"][f], 0, confident=1),
            floor,
        )
        for confident in (0.6, 0.7):
            policy_row(
                f"floor {floor}: confident={confident}",
                lambda r, c=confident, f=floor: outcome(r["checks"][f], r["cosine"], confident=c),
                floor,
            )
    print(
        f"generated answers the check let through: {len(sent)}/{len(generated)}; of them with a word or "
        f"number not in the passages (strict rule): {sum(r['sent_unsupported'] for r in sent)}; "
        "the verbatim article: 0"
    )
    print(
        f"raw generations (not 'the passages do not say') with a word or number not in the passages: "
        f"{sum(r['raw_unsupported'] for r in spoke)}/{len(spoke)}"
    )
    first = [r["first_s"] * 1000 for r in generated]
    total = [r["total_s"] * 1000 for r in generated]
    tokens = sum(r["tokens"] for r in generated)
    print(
        f"\n3. latency over {len(generated)} generations ({args.threads} thread): first token p50 "
        f"{pct(first, 50):.0f} ms p95 {pct(first, 95):.0f} ms; whole answer p50 {pct(total, 50):.0f} ms "
        f"p95 {pct(total, 95):.0f} ms; {tokens / (sum(total) / 1000):.1f} tokens/s; {machine_note()}"
    )
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w") as handle:
            for row in rows:
                handle.write(
                    json.dumps({k: v for k, v in row.items() if k not in ("check", "checks")}) + "\n"
                )


if __name__ == "__main__":
    main()
