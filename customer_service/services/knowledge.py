"""What the bot answers from: answer templates (one per intent) and the knowledge base (articles cut
into passages, embedded through the platform's vector index ``core.vectors``, searched by BM25 and cosine,
the two rankings fused: ``kb_search``)."""

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction

from core import vectors
from core.billing import services as billing
from core.billing.models import Meter
from core.errors import InvalidInput, NotFound
from core.ml.grounding import BM25, rrf_fuse
from customer_service.models import AnswerTemplate, Article, ArticleChunk
from customer_service.services.common import APP, RETRIEVAL_TASK

MAX_TEMPLATE_CHARS = 4000
MAX_ARTICLE_CHARS = 100_000
CHUNK_WORDS = 120


# --- answer templates -------------------------------------------------------------------------------


def _intent_name(intent: str) -> str:
    intent = (intent or "").strip()
    if not intent or len(intent) > 100:
        raise InvalidInput("The intent must be 1 to 100 characters.", details={"field": "intent"})
    return intent


def template_save(*, organisation, intent: str, body: str, active: bool = True) -> AnswerTemplate:
    """Create or replace the answer for an intent."""
    intent = _intent_name(intent)
    body = (body or "").strip()
    if not body or len(body) > MAX_TEMPLATE_CHARS:
        raise InvalidInput(
            f"The answer must be 1 to {MAX_TEMPLATE_CHARS} characters.", details={"field": "body"}
        )
    template, _ = AnswerTemplate.all_tenants.update_or_create(
        organisation=organisation, intent=intent, defaults={"body": body, "active": bool(active)}
    )
    return template


def template_delete(*, organisation, template_id: int) -> None:
    deleted, _ = AnswerTemplate.objects.for_org(organisation).filter(pk=template_id).delete()
    if not deleted:
        raise NotFound("No such answer template.")


# --- knowledge base ---------------------------------------------------------------------------------


def chunk_text(text: str, *, words: int = CHUNK_WORDS) -> list[str]:
    """Passages of about ``words`` words: whole paragraphs where they fit, long ones split on sentences."""
    pieces: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        if len(paragraph.split()) <= words:
            pieces.append(paragraph)
            continue
        current: list[str] = []
        for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
            if current and len(" ".join(current + [sentence]).split()) > words:
                pieces.append(" ".join(current))
                current = []
            current.append(sentence)
        if current:
            pieces.append(" ".join(current))
    chunks: list[str] = []
    for piece in pieces:  # merge short neighbours so a passage carries enough context
        if chunks and len((chunks[-1] + " " + piece).split()) <= words:
            chunks[-1] = chunks[-1] + "\n\n" + piece
        else:
            chunks.append(piece)
    return chunks


def _kb_rows(organisation):
    return ArticleChunk.objects.for_org(organisation).filter(article__published=True)


def _kb_rebuild(organisation, model: str) -> int:
    return kb_reindex(organisation=organisation)


# The knowledge base's passages as a vector source: their vectors and model live on ArticleChunk rows.
KB_VECTORS = vectors.VectorSource(
    name="customer_service.kb",
    app=APP,
    task=RETRIEVAL_TASK,
    rows=_kb_rows,
    rebuild=_kb_rebuild,
)


def _index_articles(organisation, articles: list[Article]) -> None:
    """(Re)build the passages of ``articles`` with one embedding pass over all of them."""
    ArticleChunk.all_tenants.filter(article__in=articles).delete()
    chunks = [
        ArticleChunk(organisation=organisation, article=article, position=i, text=passage)
        for article in articles
        for i, passage in enumerate(chunk_text(f"{article.title}\n\n{article.body}"))
    ]
    embedded = vectors.texts_embed(
        organisation=organisation, app=APP, task=RETRIEVAL_TASK, texts=[chunk.text for chunk in chunks]
    )
    vectors.vectors_fill(source=KB_VECTORS, objects=chunks, embedded=embedded)
    ArticleChunk.all_tenants.bulk_create(chunks)


def article_save(
    *,
    organisation,
    title: str,
    body: str,
    url: str = "",
    published: bool = True,
    article_id: int | None = None,
) -> Article:
    """Create or update an article and (re)index its passages, all or nothing."""
    title, body = (title or "").strip(), (body or "").strip()
    if not title or len(title) > 200:
        raise InvalidInput("The title must be 1 to 200 characters.", details={"field": "title"})
    if not body or len(body) > MAX_ARTICLE_CHARS:
        raise InvalidInput(
            f"The body must be 1 to {MAX_ARTICLE_CHARS} characters.", details={"field": "body"}
        )
    if article_id is None:
        billing.quota_check(organisation=organisation, meter=Meter.STORED_RECORDS, quantity=1)
    with transaction.atomic():
        if article_id is None:
            article = Article.all_tenants.create(
                organisation=organisation, title=title, body=body, url=url, published=published
            )
        else:
            found = Article.objects.for_org(organisation).select_for_update().filter(pk=article_id).first()
            if found is None:
                raise NotFound("No such article.")
            article = found
            article.title, article.body, article.url, article.published = title, body, url, published
            article.save()
        _index_articles(organisation, [article])
    return article


def article_delete(*, organisation, article_id: int) -> None:
    deleted, _ = Article.objects.for_org(organisation).filter(pk=article_id).delete()
    if not deleted:
        raise NotFound("No such article.")


def kb_reindex(*, organisation) -> int:
    """Re-embed every article whose passages were made by another model; returns how many."""
    reference = vectors.current_model(organisation=organisation, app=APP, task=RETRIEVAL_TASK)
    stale = (
        Article.objects.for_org(organisation)
        .filter(chunks__isnull=False)
        .exclude(chunks__embedder=reference)
        .distinct()
    )
    count = 0
    for article_id in list(stale.values_list("pk", flat=True)):
        # One article at a time, locked: concurrent searches do not both rebuild it.
        with transaction.atomic():
            article = Article.all_tenants.select_for_update().get(pk=article_id)
            if ArticleChunk.all_tenants.filter(article=article).exclude(embedder=reference).exists():
                _index_articles(organisation, [article])
                count += 1
    return count


@dataclass(frozen=True)
class Hit:
    article_id: int
    title: str
    url: str
    passage: str
    score: float


KB_SEARCH_MODES = ("hybrid", "dense", "lexical")
KB_POOL = 20  # passages each ranking gives to the fusion


def kb_search(
    *, organisation, query: str, k: int = 3, mode: str | None = None, embedded: vectors.Embedded | None = None
) -> list[Hit]:
    """The ``k`` best published passages for ``query``, best first, one per article; ``score`` is each
    passage's cosine to the query (what ``retrieval_threshold`` is compared with).

    ``mode`` (default: the ``CS_KB_SEARCH`` setting): "hybrid" fuses the BM25 and the cosine rankings by
    reciprocal rank fusion (``core.ml.grounding``); "dense" is cosine alone, "lexical" BM25 alone (both for
    comparison: bench/grounded.py). Passages are ranked by the platform's vector index (``core.vectors``),
    which first re-embeds the articles made by an older model. ``embedded``: the query's vector from the
    current retrieval model when the caller has it already (``core.vectors.embedding_reuse``)."""
    mode = mode or settings.CS_KB_SEARCH
    if mode not in KB_SEARCH_MODES:
        raise InvalidInput(f"The search mode must be one of {', '.join(KB_SEARCH_MODES)}.")
    if mode == "dense":
        return _dense_search(organisation, embedded or query, k)
    pool = max(k * 4, KB_POOL)
    shapes = vectors.row_shapes(source=KB_VECTORS, organisation=organisation)  # the BM25's key too
    dense, embedded = vectors.vector_search(
        source=KB_VECTORS, organisation=organisation, query=embedded or query, k=pool, shapes=shapes
    )
    if embedded is None:
        return []
    lexical = [key for key, _score in _bm25(organisation, shapes).top(query, pool)]
    fused = rrf_fuse([[hit.key for hit in dense], lexical] if mode == "hybrid" else [lexical])
    cosine = {hit.key: hit.score for hit in dense}
    cosine |= _cosines(organisation, [key for key, _ in fused if key not in cosine], embedded)
    found = [vectors.VectorHit(key, cosine[key]) for key, _ in fused if key in cosine]
    return _one_per_article(organisation, found, k)


def _dense_search(organisation, query: str | vectors.Embedded, k: int) -> list[Hit]:
    query_or_vector = query
    wanted = k * 4
    while True:
        found, embedded = vectors.vector_search(
            source=KB_VECTORS, organisation=organisation, query=query_or_vector, k=wanted
        )
        if embedded is None:
            return []
        hits = _one_per_article(organisation, found, k)
        if len(hits) == k or len(found) < wanted:
            return hits
        wanted, query_or_vector = wanted * 4, embedded


def _cosines(organisation, keys: list, embedded: vectors.Embedded) -> dict:
    """The cosine of ``embedded``'s query to the passages ``keys`` (those made by the same model)."""
    if not keys:
        return {}
    rows = _kb_rows(organisation).filter(pk__in=keys, embedder=embedded.model).values_list("pk", "vector")
    query = embedded.vectors[0]
    return {pk: float(np.frombuffer(bytes(vector), dtype=np.float32) @ query) for pk, vector in rows}


_bm25_cache: OrderedDict[tuple, BM25] = OrderedDict()
_bm25_lock = threading.Lock()
BM25_CACHE_SIZE = 16


def _bm25(organisation, shapes: dict) -> BM25:
    """BM25 over the organisation's published passages, built once per process while they stay the same:
    keyed on their fingerprint (``shapes``: ``vectors.row_shapes`` of ``KB_VECTORS``, read for the search
    anyway; a passage's text changes with its row, which changes the fingerprint)."""
    rows = _kb_rows(organisation)
    key = (organisation.pk, *vectors.shapes_fingerprint(shapes))
    with _bm25_lock:
        if key in _bm25_cache:
            _bm25_cache.move_to_end(key)
            return _bm25_cache[key]
    pairs = list(rows.values_list("pk", "text"))
    index = BM25([pk for pk, _ in pairs], [text for _, text in pairs])
    with _bm25_lock:
        for old in [k for k in _bm25_cache if k[0] == organisation.pk]:
            del _bm25_cache[old]
        _bm25_cache[key] = index
        while len(_bm25_cache) > BM25_CACHE_SIZE:
            _bm25_cache.popitem(last=False)
    return index


def _one_per_article(organisation, found: list, k: int) -> list[Hit]:
    passages = {
        pk: (article_id, text, title, url)
        for pk, article_id, text, title, url in ArticleChunk.objects.for_org(organisation)
        .filter(pk__in=[hit.key for hit in found])
        .values_list("pk", "article_id", "text", "article__title", "article__url")
    }
    hits: list[Hit] = []
    seen: set[int] = set()
    for hit in found:
        if hit.key not in passages:  # deleted since the index was read
            continue
        article_id, text, title, url = passages[hit.key]
        if article_id in seen:
            continue
        seen.add(article_id)
        hits.append(Hit(article_id, title, url, text, hit.score))
        if len(hits) == k:
            break
    return hits
