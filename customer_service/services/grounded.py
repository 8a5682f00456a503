"""Grounded answers (a tenant's ``grounded_answers``): the packaged small generative model phrases an answer
to a visitor's question from the knowledge-base passages retrieved for it, and only from them; the answer
cites them (their articles, linked by the widget). What counts as standing on the passages, and when the
answer is refused, is ``core.ml.grounding.answer_check``; ``answering.decide`` turns a refusal into "not in
our articles" and a hand-off when retrieval was not confident either, else into the plain article answer
(the passage itself), as it does a missing or failing model: text the check refused is never sent.

The model loads once per process (``core.ml.generator``) and generates under a lock; callers run this off
the event loop (the widget's consumer answers in a worker thread, showing "typing" meanwhile).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from core.ml.generator import Generator, generator_is_loaded, load_generator
from core.ml.grounding import outcome
from core.registry.services.common import runtime
from customer_service.models import BotSettings
from customer_service.services.knowledge import Hit

NOT_FOUND = "I could not find the answer to that in our help articles."


@dataclass(frozen=True)
class Grounded:
    outcome: str  # "answer", "decline" or "article" (core.ml.grounding.outcome)
    declined: bool
    text: str  # the answer (declined: the generator's words, for the record)
    citations: tuple[dict[str, Any], ...]  # [{"article", "title", "url"}], in the order cited
    reason: str  # why it was declined
    support: float
    first_token_s: float
    total_s: float


def _generator_path() -> Path | None:
    return Path(settings.CS_GROUNDED_MODEL) if settings.CS_GROUNDED_MODEL else None


def generator_for() -> Generator:
    """The process's generator (``CS_GROUNDED_MODEL``, else the packaged SmolLM2), on the serving threads."""
    return load_generator(runtime=runtime(threads=settings.ML_SERVE_THREADS), path=_generator_path())


def generator_loaded() -> bool:
    return generator_is_loaded(runtime=runtime(threads=settings.ML_SERVE_THREADS), path=_generator_path())


def generator_warm() -> bool:
    """Load the generator and run it once, at a serving process's start (``Product.warmup``), when any
    organisation answers with it: its first grounded answer would otherwise wait for the load (about 10 s
    here). Whether it was loaded."""
    if not BotSettings.all_tenants.filter(grounded_answers=True).exists():
        return False
    generator_for().generate([{"role": "user", "content": "Hello"}], max_new_tokens=1)
    return True


def _citation(hit: Hit) -> dict[str, Any]:
    url = hit.url if urlsplit(hit.url or "").scheme in ("http", "https") else ""
    return {"article": hit.article_id, "title": hit.title, "url": url}


def grounded_answer(*, question: str, hits: Sequence[Hit]) -> Grounded:
    """An answer to ``question`` from the passages of ``hits`` (the first ``CS_GROUNDED_PASSAGES``; the first
    hit is the one retrieval answers with), or a refusal, and what to do (``outcome``: a refusal declines
    only when the first hit's cosine is under ``CS_GROUNDED_CONFIDENT``; above, the article answers).
    Raises ``MLError`` when the model is missing or cannot load."""
    hits = list(hits)[: max(1, settings.CS_GROUNDED_PASSAGES)]
    generation, check = generator_for().answer(
        question,
        [hit.passage for hit in hits],
        max_new_tokens=settings.CS_GROUNDED_MAX_TOKENS,
        floor=settings.CS_GROUNDED_SUPPORT_FLOOR,
    )
    citations: list[dict[str, Any]] = []
    for number in check.cited:  # one link per article, in the order cited
        citation = _citation(hits[number - 1])
        if all(c["article"] != citation["article"] for c in citations):
            citations.append(citation)
    return Grounded(
        outcome=outcome(check, hits[0].score, confident=settings.CS_GROUNDED_CONFIDENT),
        declined=check.declined,
        text=check.answer,
        citations=tuple(citations),
        reason=check.reason,
        support=check.support,
        first_token_s=generation.first_token_s,
        total_s=generation.total_s,
    )
