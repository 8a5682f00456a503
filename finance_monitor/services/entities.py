"""Watch-lists and tagging documents with the entries they mention.

Rules (measured by ``bench/entity_tagging.py`` on ``finance_monitor/data/entity_tagging.jsonl``):
- a cashtag (``$ON``, any case) always counts;
- the company's name or one of its aliases, as whole words, case-insensitive, counts;
- a bare ticker counts when written in capitals as a whole word and it is not a common English word;
- a bare ticker that *is* a common word (ON, ARE, GO, CAN, FOR, ALL, ...) counts only with market context
  beside it: an exchange prefix (``NASDAQ: ON``, ``NYSE:ALL``), a parenthesised ticker (``(ON)``), or a
  market word right after it (``ON shares``, ``GO stock``) or ``shares of`` before it, and never in a text
  written mostly in capitals (a shouted headline turns every word into a ticker);
- a keyword counts as a whole-word phrase, case-insensitive.
"""

import re
from dataclasses import dataclass

from django.db import transaction

from core.errors import InvalidInput
from finance_monitor.models import Document, Entity, EntityKind, Mention
from finance_monitor.services.caps import cap_check

MAX_ENTRIES = 2_000  # per organisation: every ingested document is tagged against them all (services.caps)

COMMON_WORDS = frozenset(
    [
        "a",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "been",
        "best",
        "big",
        "but",
        "by",
        "can",
        "car",
        "cat",
        "day",
        "did",
        "do",
        "dog",
        "eat",
        "even",
        "ever",
        "fast",
        "few",
        "fit",
        "for",
        "fun",
        "get",
        "go",
        "good",
        "got",
        "had",
        "has",
        "have",
        "he",
        "her",
        "here",
        "him",
        "his",
        "hot",
        "how",
        "i",
        "if",
        "in",
        "is",
        "it",
        "its",
        "job",
        "just",
        "key",
        "law",
        "let",
        "low",
        "main",
        "man",
        "many",
        "may",
        "me",
        "more",
        "most",
        "new",
        "next",
        "nice",
        "no",
        "not",
        "now",
        "of",
        "off",
        "oh",
        "ok",
        "old",
        "on",
        "one",
        "open",
        "or",
        "our",
        "out",
        "own",
        "peak",
        "play",
        "plus",
        "post",
        "pre",
        "real",
        "red",
        "run",
        "say",
        "see",
        "she",
        "so",
        "some",
        "sun",
        "team",
        "tell",
        "the",
        "then",
        "they",
        "this",
        "to",
        "too",
        "top",
        "true",
        "two",
        "up",
        "us",
        "use",
        "very",
        "was",
        "way",
        "we",
        "well",
        "were",
        "what",
        "when",
        "who",
        "why",
        "will",
        "win",
        "with",
        "yes",
        "you",
    ]
)
MARKET_AFTER = frozenset(
    ["shares", "share", "stock", "stocks", "options", "calls", "puts", "ticker", "equity", "price"]
)
_EXCHANGE = r"(?:nasdaq|nyse|amex|lse|tsx|otc|nyse\s+american)\s*:\s*"


@dataclass(frozen=True)
class EntitySpec:
    key: int | str
    kind: str
    name: str
    ticker: str = ""
    aliases: tuple[str, ...] = ()


def _phrase(words: str) -> re.Pattern:
    escaped = r"\s+".join(re.escape(w) for w in words.split())
    return re.compile(rf"(?<![\w$]){escaped}(?!\w)", re.IGNORECASE)


def _mostly_capitals(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.6


def tag(text: str, entities: list[EntitySpec]) -> list[tuple[int | str, str]]:
    """(entity key, how) for every entry ``text`` mentions, each once."""
    found: list[tuple[int | str, str]] = []
    shouting = _mostly_capitals(text)
    for entity in entities:
        how = _match(text, entity, shouting)
        if how:
            found.append((entity.key, how))
    return found


def _match(text: str, entity: EntitySpec, shouting: bool) -> str:
    ticker = entity.ticker.strip().lstrip("$")
    if ticker and re.search(rf"\${re.escape(ticker)}(?!\w)", text, re.IGNORECASE):
        return "cashtag"
    if entity.kind in (EntityKind.COMPANY, EntityKind.KEYWORD) and _phrase(entity.name).search(text):
        return "name" if entity.kind == EntityKind.COMPANY else "keyword"
    for alias in entity.aliases:
        if alias.strip() and _phrase(alias).search(text):
            return "alias"
    if not ticker:
        return ""
    t = re.escape(ticker)
    if re.search(rf"{_EXCHANGE}{t}(?!\w)", text, re.IGNORECASE) or re.search(rf"\({t}\)", text):
        return "ticker"
    bare = list(re.finditer(rf"(?<![\w$]){t}(?![\w])", text))
    if not bare:
        return ""
    if ticker.lower() not in COMMON_WORDS:
        return "ticker"
    if shouting:
        return ""
    for hit in bare:
        after = re.match(r"\s+(\w+)", text[hit.end() :])
        before = text[: hit.start()].lower()
        if (after and after.group(1).lower() in MARKET_AFTER) or re.search(r"shares\s+of\s+$", before):
            return "ticker"
    return ""


def naive_tag(text: str, entities: list[EntitySpec]) -> list[tuple[int | str, str]]:
    """The peer: any of the name, aliases or ticker as a plain whole word, case-insensitive."""
    found = []
    for entity in entities:
        terms = [entity.name, *entity.aliases] + ([entity.ticker] if entity.ticker else [])
        if any(term.strip() and _phrase(term.lstrip("$")).search(text) for term in terms):
            found.append((entity.key, "word"))
    return found


def spec(entity: Entity) -> EntitySpec:
    return EntitySpec(entity.pk, entity.kind, entity.name, entity.ticker, tuple(entity.aliases))


def entity_save(*, organisation, kind: str, name: str, ticker: str = "", aliases=(), entity=None) -> Entity:
    name = name.strip()
    ticker = ticker.strip().lstrip("$").upper()
    aliases = [a.strip() for a in aliases if a.strip()]
    if kind == EntityKind.TICKER and not ticker:
        raise InvalidInput("A ticker entry needs a ticker.")
    if ticker and not re.fullmatch(r"[A-Z0-9.\-]{1,12}", ticker):
        raise InvalidInput("ticker must be 1 to 12 letters, digits, dots or dashes.")
    clash = Entity.objects.for_org(organisation).filter(name=name)
    if entity is not None:
        clash = clash.exclude(pk=entity.pk)
    if clash.exists():
        raise InvalidInput(f"The watch-list has '{name}' already.")
    entity = entity or Entity(organisation=organisation)
    entity.kind, entity.name, entity.ticker, entity.aliases = kind, name, ticker, aliases
    with transaction.atomic():
        if entity.pk is None:
            entries = Entity.objects.for_org(organisation)
            cap_check(organisation=organisation, rows=entries, limit=MAX_ENTRIES, what="watch-list entries")
        entity.save()
    return entity


def entity_delete(*, entity: Entity) -> None:
    """Take ``entity`` off the watch-list, with its mentions and the alert rules that watch it (and their
    alerts); the documents stay."""
    entity.delete()


def documents_tag(*, organisation, document_ids: list[int]) -> int:
    """Record which watch-list entries these documents mention; returns the mentions added."""
    entities = [spec(e) for e in Entity.objects.for_org(organisation)]
    if not entities or not document_ids:
        return 0
    mentions = []
    for document_id, title, text in (
        Document.objects.for_org(organisation).filter(pk__in=document_ids).values_list("id", "title", "text")
    ):
        for key, how in tag(f"{title}\n{text}" if title else text, entities):
            mentions.append(
                Mention(organisation=organisation, document_id=document_id, entity_id=key, how=how)
            )
    Mention.all_tenants.bulk_create(mentions, ignore_conflicts=True)
    return len(mentions)
