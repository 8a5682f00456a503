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
- their *anchors* are the same: numbers, $cashtags, @mentions and negations. "Fed holds at 5.25%" and "Fed
  holds at 5.50%", or "$AAPL recall" and "$TSLA recall", are one word apart and different news; a copy that
  changes its meaning must not leave the trends.

Texts with fewer than ``min_words`` words get no fingerprint: a one-word edit of a four-word headline is
another headline.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

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


DEFAULT = NearDuplicateConfig()


@dataclass(frozen=True)
class Fingerprint:
    shingles: frozenset[int]  # 64-bit hashes of the word shingles
    anchors: tuple[str, ...]  # numbers, cashtags, @mentions, negations, sorted (a multiset): equal in a copy
    bands: tuple[int, ...]  # one signed 64-bit hash per band (the band's index is hashed in)


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


def fingerprint(text: str, config: NearDuplicateConfig = DEFAULT) -> Fingerprint | None:
    """The text's shingles, anchors and band hashes; None when it is too short to have near copies."""
    words = tokens(text)
    if len(words) < config.min_words:
        return None
    items = shingles(words, config.shingle_words)
    anchors = tuple(sorted(w for w in words if _anchor(w)))  # "is not" -> "is not not" changes them
    return Fingerprint(items, anchors, band_hashes(signature(items, config), config))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def is_near_copy(a: Fingerprint, b: Fingerprint, config: NearDuplicateConfig = DEFAULT) -> bool:
    """The confirmation of a candidate pair: the same anchors and shingle Jaccard >= the threshold."""
    return a.anchors == b.anchors and jaccard(a.shingles, b.shingles) >= config.threshold


def share_band(a: Fingerprint, b: Fingerprint) -> bool:
    return any(x == y for x, y in zip(a.bands, b.bands, strict=True))


def near_copy_pair(
    a: Fingerprint | None, b: Fingerprint | None, config: NearDuplicateConfig = DEFAULT
) -> bool:
    """What the store decides for a pair: a shared band (the lookup finds it) and the confirmation."""
    return a is not None and b is not None and share_band(a, b) and is_near_copy(a, b, config)
