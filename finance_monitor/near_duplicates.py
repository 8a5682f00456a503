"""When two texts are the same document: the exact rule's normalised text and the near-copy rule.

Plain Python + numpy, no Django, so the ingest (``services.documents``, ``services.near_copies``) and
``bench/fm_duplicates.py`` run the same rules.

The exact rule: two texts are copies when their normalised texts are equal (``normalise_text``: NFKC, lower
case, links, the ``RT @user:`` / reply / ``via @user`` wrapping, punctuation and runs of white space removed);
the ingest keeps the sha256 of it (``text_hash``) under a unique constraint.

The near-copy rule, for what that misses (a word or two edited, added or dropped), on the *unwrapped* text
(``unwrap_text``: the normalised text before punctuation goes, so numbers, $cashtags and @mentions still
read). Two texts are near copies when

- they share at least one LSH band of their MinHash signatures (``bands`` x ``rows`` hash functions: the
  candidates a store looks up by band hash, with no scan), and
- the Jaccard similarity of their word-shingle sets is at least ``threshold`` (the exact figure, so that the
  bands' false candidates are dropped), and
- their *anchors* are the same: numbers, $cashtags, @mentions and negations, and the watch-list entries the
  text mentions when the caller passes them (``entities``: the ingest tags both texts with the organisation's
  watch-list). "Fed holds at 5.25%" and "Fed holds at 5.50%", or "$AAPL recall" and "$TSLA recall", are one
  word apart and different news; a copy that changes its meaning must not leave the trends (nor a watched
  company's trend: a copy is not counted for the entities its original does not mention), and
- no *name* was swapped for another: when each text holds a name the other lacks ("Apple shares fall 3% after
  earnings miss" / "Microsoft shares fall 3% after earnings miss"), they are about different companies,
  people or places. A name is a word that the shipped twitter financial news texts (``NAME_SOURCES``, MIT)
  write capitalised at least ``name_share`` of the ``name_min_count`` or more times they use it: "microsoft",
  "tuesday", "fed", not "shares" (capitalised only at a sentence's or a headline's start). This reads the
  words, not the text's own case, so an upper- or lower-cased copy is judged like the original. A name only
  added or dropped ("Apple and Microsoft shares fall" / "Apple shares fall") is still an edit: a swap is
  what a template reused for another company looks like, and requiring both sides keeps the reworded copies
  whose edited word happens to be a name (bench/fm_duplicates.py: recall 0.974 with the swap rule, 0.90
  when any differing name separated two texts).

Texts with fewer than ``min_words`` words get no fingerprint: a one-word edit of a four-word headline is
another headline.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_LINK = re.compile(r"https?://\S+|www\.\S+")
# what a copy adds around a text: "RT @user:" (repeated), a reply's leading @addressees, a final "via @user"
_WRAPPING = re.compile(r"^\s*(?:rt\s+@\w+:?|@\w+:?)\s*|\s*\(?\bvia\s+@\w+\)?\s*$")
_NON_WORD = re.compile(r"[\W_]+")


def unwrap_text(text: str) -> str:
    """NFKC, lower case, no links, no retweet/reply/via wrapping; punctuation kept (the near-copy rule below
    reads numbers, $cashtags and @mentions in it)."""
    text = _LINK.sub(" ", unicodedata.normalize("NFKC", text).lower())
    while True:
        unwrapped = _WRAPPING.sub("", text)
        if unwrapped == text:
            return text
        text = unwrapped


def normalise_text(text: str) -> str:
    """The text two copies of a document share: the unwrapped text with punctuation and white space runs as
    one space. @mentions inside the text stay: "a recall at @tesla" and "a recall at @ford" are different
    news (bench/fm_duplicates.py measures the rule)."""
    return _NON_WORD.sub(" ", unwrap_text(text)).strip()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalise_text(text).encode()).hexdigest()


# a word, a number with its decimals (5.25, 1,000), a $cashtag or an @mention
_TOKEN = re.compile(r"[$@]?[^\W_]+(?:[.,]\d+)*")
_NEGATIONS = frozenset({"not", "no", "never", "nor", "without", "neither", "none"})


@dataclass(frozen=True)
class NearDuplicateConfig:
    # words per shingle: tweets are short (a dozen words), and each edited word changes n shingles, so on the
    # labelled pairs of bench/fm_duplicates.py (shipped texts) 1 caught 97.6% at precision 0.998, 2 92-95%
    # and 3 85-90% at the same precision: anchors, not word order, tell templated headlines apart
    shingle_words: int = 1
    bands: int = 16
    rows: int = 4  # bands x rows hash functions; a pair at Jaccard J shares a band w.p. 1-(1-J^rows)^bands
    threshold: float = 0.6  # Jaccard of the shingle sets, checked on every candidate
    min_words: int = 6  # "BioSyent reports Q3 results" / "BergenBio reports Q3 results": too short to judge
    seed: int = 20261204
    # a name: a word the shipped texts write capitalised at least name_share of the (name_min_count or more)
    # times they use it; 0.95 and 3 kept recall within half a point of the rule without names on
    # bench/fm_duplicates.py while separating 275 of 300 texts with one company written for another
    name_share: float = 0.95
    name_min_count: int = 3


DEFAULT = NearDuplicateConfig()


@dataclass(frozen=True)
class Fingerprint:
    shingles: frozenset[int]  # 64-bit hashes of the word shingles
    anchors: tuple[str, ...]  # numbers, cashtags, @mentions, negations, sorted (a multiset): equal in a copy
    bands: tuple[int, ...]  # one signed 64-bit hash per band (the band's index is hashed in)
    words: frozenset[int] = frozenset()  # 64-bit hashes of the words (the shingles when they are one word)
    names: frozenset[int] = frozenset()  # those of the words that are names (``name_words``)


# the shipped texts names are learnt from: the twitter financial news training splits (MIT)
NAME_SOURCES = tuple(
    Path(__file__).resolve().parent / "data" / "twitter_financial_news" / f"{name}_train.csv.gz"
    for name in ("topic", "sentiment")
)


@functools.cache
def name_words(share: float = DEFAULT.name_share, min_count: int = DEFAULT.name_min_count) -> frozenset[str]:
    """The words (lower case) that ``NAME_SOURCES`` write capitalised at least ``share`` of the ``min_count``
    or more times they use them. Read once per process (about 0.3 s)."""
    capital: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    for path in NAME_SOURCES:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                for word in _TOKEN.findall(_LINK.sub(" ", unicodedata.normalize("NFKC", row["text"]))):
                    if word[0].isalpha():
                        (capital if word[0].isupper() else lower)[word.lower()] += 1
    return frozenset(
        word for word, n in capital.items() if n + lower[word] >= min_count and n >= share * (n + lower[word])
    )


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.replace("n't", " not"))


def _anchor(token: str) -> bool:
    return token[0] in "$@" or token in _NEGATIONS or any(c.isdigit() for c in token)


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def shingles(words: list[str], n: int) -> frozenset[int]:
    grams = [" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))]
    return frozenset(_hash64(g.encode()) for g in grams)


_PERMUTATIONS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _permutations(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` multiply-shift hash functions h(x) = (a x + b) mod 2^64 >> 32, a odd (seeded, cached)."""
    key = (count, seed)
    if key not in _PERMUTATIONS:
        rng = np.random.default_rng(seed)
        a = rng.integers(0, 2**63, size=count, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        b = rng.integers(0, 2**63, size=count, dtype=np.uint64)
        _PERMUTATIONS[key] = (a, b)
    return _PERMUTATIONS[key]


def signature(items: frozenset[int], config: NearDuplicateConfig = DEFAULT) -> np.ndarray:
    """The MinHash signature: (bands * rows,) uint64, the minimum of each hash function over the shingles."""
    a, b = _permutations(config.bands * config.rows, config.seed)
    x = np.fromiter(items, dtype=np.uint64, count=len(items))[:, None]  # (shingles, 1)
    with np.errstate(over="ignore"):
        hashed = (x * a[None, :] + b[None, :]) >> np.uint64(32)  # (shingles, functions), wraps mod 2^64
    return hashed.min(axis=0)


def band_hashes(sig: np.ndarray, config: NearDuplicateConfig = DEFAULT) -> tuple[int, ...]:
    """One hash per band of ``rows`` signature values, with the band's index, as a signed 64-bit integer
    (a PostgreSQL bigint)."""
    out = []
    for band in range(config.bands):
        rows = sig[band * config.rows : (band + 1) * config.rows]
        value = _hash64(band.to_bytes(2, "little") + rows.tobytes())
        out.append(value - (1 << 64) if value >= 1 << 63 else value)
    return tuple(out)


def fingerprint(
    text: str, config: NearDuplicateConfig = DEFAULT, *, entities: Iterable[str] = ()
) -> Fingerprint | None:
    """The unwrapped text's shingles, anchors and band hashes, its words and names; None when it is too short
    to have near copies. ``entities``: the keys of the watch-list entries the text mentions (anchors too)."""
    words = tokens(text)
    if len(words) < config.min_words:
        return None
    items = shingles(words, config.shingle_words)
    every = items if config.shingle_words == 1 else shingles(words, 1)
    named = name_words(config.name_share, config.name_min_count)
    names = frozenset(_hash64(w.encode()) for w in words if w in named)
    anchors = [w for w in words if _anchor(w)]  # "is not" -> "is not not" changes them
    anchors += [f"entity:{key}" for key in sorted(set(entities))]  # ":" is in no token
    return Fingerprint(
        items, tuple(sorted(anchors)), band_hashes(signature(items, config), config), every, names
    )


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def is_near_copy(a: Fingerprint, b: Fingerprint, config: NearDuplicateConfig = DEFAULT) -> bool:
    """The confirmation of a candidate pair: the same anchors, no name swapped for another, and shingle
    Jaccard >= the threshold."""
    return (
        a.anchors == b.anchors
        and not names_swapped(a, b)
        and jaccard(a.shingles, b.shingles) >= config.threshold
    )


def names_swapped(a: Fingerprint, b: Fingerprint) -> bool:
    """Each text holds a name the other lacks: one company (person, place) written for another."""
    return bool(a.names - b.words) and bool(b.names - a.words)


def share_band(a: Fingerprint, b: Fingerprint) -> bool:
    return any(x == y for x, y in zip(a.bands, b.bands, strict=True))


def near_copy_pair(
    a: Fingerprint | None, b: Fingerprint | None, config: NearDuplicateConfig = DEFAULT
) -> bool:
    """What the store decides for a pair: a shared band (the lookup finds it) and the confirmation."""
    return a is not None and b is not None and share_band(a, b) and is_near_copy(a, b, config)
