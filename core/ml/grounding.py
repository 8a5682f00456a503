"""Grounded answers, the pure parts: BM25 over passages, reciprocal rank fusion, the prompt, and the checks
that decide whether a generated answer stands on its passages (no torch, no model here).

Knowledge-base search ranks passages twice, by BM25 (exact words: product names, numbers) and by the
encoder's cosine (paraphrases), and fuses the two rankings by reciprocal rank fusion (Cormack et al. 2009:
``sum 1 / (k + rank)``, k = 60), which needs no score calibration between the two. The generator
(``core.ml.generator``) phrases an answer from the top passages; ``answer_check`` then refuses an answer
that says it does not know, or whose content words are mostly not in the passages it was given.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

RRF_K = 60
DONT_KNOW = "I don't know."
# A content word counts as supported when it (or its stem) occurs in the passages; an answer stands when at
# least this share of its content words do, and every number in it does.
SUPPORT_FLOOR = 0.75

_STOPWORD_TEXT = """
a about above after again all also am an and any are as at be because been before being below between both
but by can could did do does doing down during each few for from further had has have having he her here hers
him his how i if in into is it its itself just me more most my no nor not now of off on once only or other our
ours out over own same she should so some such than that the their theirs them then there these they this
those through to too under until up very was we were what when where which while who whom why will with would
you your yours yourself please thanks thank hello hi want like get got need know tell let may might must shall
us one ones
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+(?:[.,:'][a-z0-9]+)*")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_CITE = re.compile(r"\[(\d{1,2})\]")
_DECLINE = re.compile(
    r"\b(?:i (?:do not|don't|dont) know"
    r"|not (?:in|covered by|mentioned in|stated in) the (?:passages|articles?)"
    r"|(?:passages|articles?) (?:do|does) not (?:say|mention|contain|cover)|no information|cannot answer"
    r"|can't answer|not sure|(?:does|do) not (?:specify|mention|say)|unable to)\b",
    re.IGNORECASE,
)


def _stem(word: str) -> str:
    """A light English stem (enough to match "cards"/"card", "opening"/"open", "repaired"/"repair",
    "purchase"/"purchases")."""
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            word = word[: -len(suffix)]
            break
    return word[:-1] if len(word) > 3 and word.endswith("e") else word  # "purchase" as "purchases"


def terms(text: str) -> list[str]:
    """The stemmed content words of ``text``, in order (stopwords dropped; numbers kept whole)."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


# --- retrieval -------------------------------------------------------------------------------------------


class BM25:
    """Okapi BM25 (k1 = 1.5, b = 0.75, idf ``ln(1 + (N - n + 0.5) / (n + 0.5))``, never negative) over a
    fixed list of passages; ``top`` ranks them for a query. Small knowledge bases: a dict per passage."""

    def __init__(self, keys: Sequence[Hashable], texts: Sequence[str], k1: float = 1.5, b: float = 0.75):
        if len(keys) != len(texts):
            raise ValueError(f"{len(keys)} keys but {len(texts)} texts")
        self.keys = list(keys)
        self.k1, self.b = k1, b
        self.counts = [Counter(terms(text)) for text in texts]
        self.lengths = [sum(c.values()) for c in self.counts]
        self.average = (sum(self.lengths) / len(self.lengths)) if self.lengths else 0.0
        frequency: Counter[str] = Counter()
        for counts in self.counts:
            frequency.update(counts.keys())
        n = len(self.counts)
        self.idf = {term: math.log(1 + (n - df + 0.5) / (df + 0.5)) for term, df in frequency.items()}

    def __len__(self) -> int:
        return len(self.keys)

    def scores(self, query: str) -> list[float]:
        wanted = [t for t in dict.fromkeys(terms(query)) if t in self.idf]
        out = []
        for counts, length in zip(self.counts, self.lengths, strict=True):
            norm = self.k1 * (1 - self.b + self.b * length / (self.average or 1.0))
            out.append(
                sum(
                    self.idf[t] * counts[t] * (self.k1 + 1) / (counts[t] + norm)
                    for t in wanted
                    if t in counts
                )
            )
        return out

    def top(self, query: str, k: int) -> list[tuple[Hashable, float]]:
        """The ``k`` best passages with a positive score, best first (ties: the earlier passage)."""
        scored = [(i, s) for i, s in enumerate(self.scores(query)) if s > 0]
        scored.sort(key=lambda pair: (-pair[1], pair[0]))
        return [(self.keys[i], s) for i, s in scored[:k]]


def rrf_fuse(rankings: Sequence[Sequence[Hashable]], k: int = RRF_K) -> list[tuple[Hashable, float]]:
    """Reciprocal rank fusion: each key scores ``sum 1 / (k + rank)`` (rank from 1) over the rankings it is
    in; best first, ties broken by the best single rank, then by the first ranking's order."""
    if k < 0:
        raise ValueError("k must not be negative")
    score: dict[Hashable, float] = {}
    best: dict[Hashable, int] = {}
    for ranking in rankings:
        for rank, key in enumerate(dict.fromkeys(ranking), start=1):
            score[key] = score.get(key, 0.0) + 1.0 / (k + rank)
            best[key] = min(best.get(key, rank), rank)
    order = list(score)  # first seen first
    return sorted(
        ((key, score[key]) for key in order), key=lambda pair: (-pair[1], best[pair[0]], order.index(pair[0]))
    )


# --- the prompt and the checks ---------------------------------------------------------------------------


# The rule as a system prompt, then one worked example: SmolLM2-135M followed this best of the prompts tried
# on bench/grounded.py's questions (a bare instruction in one user turn made it apologise or echo the
# question; an "I don't know" example made it decline answerable questions: BENCHMARKS.md section 19).
SYSTEM_PROMPT = (
    "You answer a customer's question from the numbered help passages only, copying their words. Cite the "
    f"passage like [1]. If the passages do not answer the question, reply: {DONT_KNOW}"
)
EXAMPLE = (
    "Passages:\n[1] Parcels are sent with DHL. Tracking links arrive by e-mail once the parcel leaves the "
    "warehouse.\n[2] Our warehouse is in Leeds.\n\nQuestion: How will I know where my parcel is?",
    "You get a tracking link by e-mail once the parcel leaves the warehouse [1].",
)


def prompt_messages(question: str, passages: Sequence[str]) -> list[dict[str, str]]:
    """The chat messages for the generator: the rule, the example, then the numbered passages and the
    question."""
    numbered = "\n".join(f"[{i}] {' '.join(p.split())}" for i, p in enumerate(passages, start=1))
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": EXAMPLE[0]},
        {"role": "assistant", "content": EXAMPLE[1]},
        {"role": "user", "content": f"Passages:\n{numbered}\n\nQuestion: {' '.join(question.split())}"},
    ]


@dataclass(frozen=True)
class Check:
    """Whether a generated answer stands on its passages, and what it cites (1-based passage numbers)."""

    answer: str  # the answer without citation marks
    cited: tuple[int, ...]
    support: float  # share of the answer's content words found in the passages it was given
    unsupported: tuple[str, ...]  # its content words and numbers that are not in them
    declined: bool
    reason: str = ""
    said_unknown: bool = False  # the generator itself said the passages do not answer (not the check)


def support(answer: str, passages: Sequence[str]) -> tuple[float, tuple[str, ...], tuple[str, ...]]:
    """(share of ``answer``'s content words found in ``passages``, the words not found, the numbers not
    found). An answer with no content words has support 0."""
    pool = set(terms(" ".join(passages)))
    words = terms(answer)
    if not words:
        return 0.0, (), ()
    missing = tuple(dict.fromkeys(w for w in words if w not in pool))
    numbers_in = set(_NUMBER.findall(" ".join(passages)))
    numbers = tuple(dict.fromkeys(n for n in _NUMBER.findall(answer) if n not in numbers_in))
    return 1 - sum(w not in pool for w in words) / len(words), missing, numbers


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+|,\s+but\s+", text) if s.strip()]


def answer_check(
    raw: str, passages: Sequence[str], *, question: str = "", floor: float = SUPPORT_FLOOR
) -> Check:
    """Refuse (``declined``) a generated answer that says it does not know, repeats the question, or has a
    sentence that does not stand on ``passages`` (under ``floor`` of its content words in them, or a number
    not in them: a sentence is not cut out, since what is left can mislead, e.g. "After that, return costs
    apply."), or that brings no word from the passages the question did not have. Cited: the passage
    numbers it names that exist; when it names none, the passage sharing most of its content words."""
    cited = tuple(dict.fromkeys(int(n) for n in _CITE.findall(raw) if 1 <= int(n) <= len(passages)))
    answer = " ".join(_CITE.sub("", raw).split()).replace(" .", ".").replace(" ,", ",").strip()
    if not answer or _DECLINE.search(answer):
        return Check(answer, (), 0.0, (), True, "The generator says the passages do not answer it.", True)
    if answer.endswith("?"):
        return Check(answer, (), 0.0, (), True, "The generator repeated the question.")
    share, missing, numbers = support(answer, passages)
    for sentence in _sentences(answer):
        part, _missing, part_numbers = support(sentence, passages)
        if part < floor or part_numbers:
            return Check(answer, (), share, missing + numbers, True, "The answer is not all in the passages.")
    if not set(terms(answer)) - set(terms(question)):
        return Check(answer, (), share, missing, True, "The answer adds nothing from the passages.")
    if not cited:
        words = set(terms(answer))
        overlaps: list[int] = [len(words & set(terms(p))) for p in passages]
        most = max(overlaps, default=0)
        cited = (overlaps.index(most) + 1,) if most else ()
    return Check(answer, cited, share, missing, False)


def outcome(check: Check, cosine: float, *, confident: float) -> str:
    """What the bot does with a checked generation, given the best passage's cosine to the question:
    "answer" (send it); "decline" (say the articles do not answer it and offer a person) when the generation
    was refused (it said it does not know, or the check found it not in the passages) AND retrieval was not
    confident (cosine under ``confident``); else "article" (send the passage itself, which stands on itself:
    a small model's refusal does not overrule a confident retrieval)."""
    if not check.declined:
        return "answer"
    return "decline" if cosine < confident else "article"
