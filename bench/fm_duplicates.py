"""The finance monitor's copy rules, measured on labelled pairs built from twitter financial news texts.

The rules: (1) the normalised-text hash (``finance_monitor.services.documents``): two documents are the same
when their normalised texts are equal (NFKC, lower case, links, the ``RT @user:`` / reply / ``via @user``
wrapping, punctuation and runs of white space removed), checked at ingest through a unique constraint on the
sha256 of that text; (2) the hash, or else near-identical text (``finance_monitor.near_duplicates``: a shared
MinHash LSH band, word-shingle Jaccard >= the threshold, the same numbers, $cashtags, @mentions and
negations), what the ingest runs with ``FM_NEAR_DUPLICATES`` on.

Texts: ``--texts shared`` (default) the validation splits of the twitter financial news topic and sentiment
sets (MIT) read from ``--data`` (``../shared/data``; not shipped, so not the texts the near-copy parameters
were chosen on), distinct by the normalised hash; ``--texts shipped`` the training splits shipped in
``finance_monitor/data/twitter_financial_news``. Pairs, from ``--pairs`` of them:

- duplicates (should be caught): a retweet (``RT @user: ...``), a reply (``@user ...``) with ``via @user``,
  the same text with another or an extra tracking link, other case, other white space, re-punctuated, and
  all of these at once; and reworded copies: one ordinary word replaced, one dropped, one added, two
  replaced (never a number, $cashtag, @mention or negation: those change the news);
- different documents (should not be caught), the hard cases: each text's nearest other shipped text by word
  overlap (Jaccard), and edited copies whose meaning changed: another number, another cashtag, a negation,
  another @mention inside the text, and another company: up to ``--pairs`` texts naming one of ``COMPANIES``
  with it written as another of them (the template reused for another company: "Apple shares fall 3%" /
  "Microsoft shares fall 3%").

Precision (caught pairs that are duplicates) and recall (duplicates caught) per kind, for both rules and the
peer, in the same run; the ingest's rule twice: with an empty watch-list, and with ``COMPANIES`` on it (the
watch-list entries a text mentions are anchors of the rule); cosine similarity of the base encoder's
embeddings (the vector a document gets at classification) at ``--threshold``, the "semantic" rule.

    .venv/bin/python bench/fm_duplicates.py --pairs 300 --data /work/shared/data
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
import django  # noqa: E402

django.setup()  # the rule is the product's own function, in a module that imports the ORM

from bench.common import machine_note  # noqa: E402
from finance_monitor import near_duplicates as near  # noqa: E402
from finance_monitor.near_duplicates import normalise_text, text_hash, unwrap_text  # noqa: E402
from finance_monitor.services.entities import EntitySpec, tag  # noqa: E402

DATA = ROOT / "finance_monitor" / "data" / "twitter_financial_news"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=300, help="shipped texts each kind of pair is built from"
    )
    parser.add_argument("--threshold", type=float, default=0.95, help="cosine of the embedding peer")
    parser.add_argument("--texts", choices=("shared", "shipped"), default="shared")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


def shipped() -> list[str]:
    texts = []
    for name in ("topic_train.csv.gz", "sentiment_train.csv.gz"):
        with gzip.open(DATA / name, "rt", encoding="utf-8") as handle:
            texts += [row["text"] for row in csv.DictReader(handle)]
    return list(dict.fromkeys(texts))


def shared(data: Path) -> list[str]:
    """The validation splits (MIT), one text per normalised hash (the sets hold copies of their own)."""
    texts: dict[str, str] = {}
    for name in (
        "twitter_financial_news_topic/valid_data.csv",
        "twitter_financial_news_sentiment/sent_valid.csv",
    ):
        with open(data / name, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                texts.setdefault(text_hash(row["text"]), row["text"])
    return list(texts.values())


def strip_links(text: str) -> str:
    return re.sub(r"https?://\S+", "", text).strip()


def outside_links(text: str, edit) -> str:
    """``edit`` applied to the text between links (a link's characters are not the document's words)."""
    parts = re.split(r"(https?://\S+)", text)
    return "".join(part if i % 2 else edit(part) for i, part in enumerate(parts))


DUPLICATES = {
    "retweet": lambda t, r: f"RT @{r.choice(['markets', 'wsj', 'newsbot'])}: {t}",
    "reply, via": lambda t, r: f"@{r.choice(['markets', 'wsj'])} {t} via @newsbot",
    "other link": lambda t, r: f"{strip_links(t)} https://t.co/{r.getrandbits(40):x}",
    "case": lambda t, r: t.upper() if r.random() < 0.5 else t.lower(),
    "white space": lambda t, r: "  ".join(t.split(" ")) + "\n",
    "punctuation": lambda t, r: outside_links(t, lambda p: re.sub(r"(\w)([,;!?])", r"\1 \2", p)) + " !!",
    "all at once": lambda t, r: f"RT @desk: {strip_links(t).upper()}   https://bit.ly/{r.getrandbits(30):x}",
}


def other_number(text: str, rng: random.Random) -> str | None:
    body = strip_links(text)
    numbers = list(re.finditer(r"\d+", body))
    if not numbers:
        return None
    m = rng.choice(numbers)
    return body[: m.start()] + str(int(m.group()) + rng.randint(1, 9)) + body[m.end() :]


def other_cashtag(text: str, rng: random.Random) -> str | None:
    tags = re.findall(r"\$[A-Za-z]{1,5}\b", text)
    if not tags:
        return None
    return text.replace(
        tags[0], rng.choice([t for t in ("$AAPL", "$MSFT", "$TSLA", "$XOM") if t != tags[0]]), 1
    )


def negated(text: str, rng: random.Random) -> str | None:
    for word in (" is ", " will ", " has ", " are "):
        if word in text:
            return text.replace(word, f"{word}not ", 1)
    return None


def other_mention(text: str, rng: random.Random) -> tuple[str, str] | None:
    words = strip_links(text).split(" ")
    if len(words) < 3:
        return None
    at = rng.randrange(1, len(words))
    return tuple(" ".join([*words[:at], f"@{name}", *words[at:]]) for name in ("jpmorgan", "goldmansachs"))


EDITS = {"other number": other_number, "other cashtag": other_cashtag, "negation": negated}
EDITS["other @mention"] = other_mention

# companies the twitter financial news texts name often (the "other company" pairs and the watch-list line)
COMPANIES = [
    "Apple",
    "Microsoft",
    "Amazon",
    "Tesla",
    "Google",
    "Alphabet",
    "Meta",
    "Facebook",
    "Netflix",
    "Nvidia",
    "Intel",
    "AMD",
    "Boeing",
    "Ford",
    "JPMorgan",
    "Citigroup",
    "Exxon",
    "Chevron",
    "Walmart",
    "Target",
    "Disney",
    "Pfizer",
    "Moderna",
    "Coinbase",
    "Uber",
    "Twitter",
    "Salesforce",
    "Oracle",
    "IBM",
    "Starbucks",
    "Nike",
    "Costco",
    "PayPal",
    "Visa",
    "Mastercard",
    "BlackRock",
    "Snowflake",
    "Shopify",
    "Alibaba",
    "Toyota",
    "Volkswagen",
    "Samsung",
    "SoftBank",
    "HSBC",
    "Barclays",
    "Goldman Sachs",
    "Morgan Stanley",
    "Wells Fargo",
    "Bank of America",
    "Berkshire Hathaway",
    "McDonald's",
    "Credit Suisse",
    "Deutsche Bank",
]
_COMPANY = re.compile(
    r"(?<![\w$@])(" + "|".join(re.escape(c) for c in sorted(COMPANIES, key=len, reverse=True)) + r")(?!\w)"
)


def other_companies(texts: list[str], count: int, rng: random.Random) -> list[tuple[str, bool, str, str]]:
    """Up to ``count`` texts naming a listed company, each with that name written as another listed one."""
    naming = [t for t in texts if _COMPANY.search(t)]
    pairs = []
    for text in rng.sample(naming, min(count, len(naming))):
        m = _COMPANY.search(text)
        assert m is not None
        other = rng.choice([c for c in COMPANIES if c != m.group(1)])
        pairs.append(("other company", False, text, text[: m.start()] + other + text[m.end() :]))
    return pairs


_ORDINARY = re.compile(r"[A-Za-z]{3,}")
_NOT_ORDINARY = {"not", "no", "never", "nor", "without", "neither", "none"}


def reword(text: str, rng: random.Random, vocabulary: list[str], replace: int, drop: int, add: int) -> str:
    """``text`` (links dropped) with ordinary words replaced, dropped or added: never a number, $cashtag,
    @mention or negation, which change the news."""
    words = strip_links(text).split(" ")
    ordinary = [i for i, w in enumerate(words) if _ORDINARY.fullmatch(w) and w.lower() not in _NOT_ORDINARY]
    if len(ordinary) < max(replace, drop, 1):
        return text  # left alone: too few ordinary words to edit (counted, and caught as an exact copy)
    for i in rng.sample(ordinary, replace):
        words[i] = rng.choice([w for w in vocabulary if w.lower() != words[i].lower()][:50])
    for i in sorted(rng.sample(ordinary, drop), reverse=True):
        del words[i]
    for _ in range(add):
        words.insert(rng.randrange(len(words) + 1), rng.choice(vocabulary))
    return " ".join(words)


REWORDED = {
    "a word replaced": dict(replace=1, drop=0, add=0),
    "a word dropped": dict(replace=0, drop=1, add=0),
    "a word added": dict(replace=0, drop=0, add=1),
    "two words replaced": dict(replace=2, drop=0, add=0),
}


def nearest_neighbours(texts: list[str], pool: list[str]) -> list[tuple[str, str]]:
    """Each text with the pool's other text sharing the most words (Jaccard): the closest distinct tweet."""
    words = [set(normalise_text(t).split()) for t in pool]
    pairs = []
    for text in texts:
        mine = set(normalise_text(text).split())
        best, best_j = None, -1.0
        for other, theirs in zip(pool, words, strict=True):
            if other == text or not theirs:
                continue
            j = len(mine & theirs) / len(mine | theirs)
            if j > best_j:
                best, best_j = other, j
        if best is not None:
            pairs.append((text, best))
    return pairs


def build(args: argparse.Namespace) -> list[tuple[str, bool, str, str]]:
    """(kind, is a duplicate, a, b)."""
    rng = random.Random(args.seed)
    texts = shipped() if args.texts == "shipped" else shared(args.data)
    sample = rng.sample(texts, args.pairs)
    pairs = [(kind, True, t, make(t, rng)) for kind, make in DUPLICATES.items() for t in sample]
    words = sorted({w for t in texts for w in t.split(" ") if _ORDINARY.fullmatch(w)})
    for kind, edit in REWORDED.items():
        for t in sample:
            pairs.append((kind, True, t, reword(t, rng, rng.sample(words, 60), **edit)))
    for kind, edit in EDITS.items():
        for t in sample:
            changed = edit(t, rng)
            if isinstance(changed, tuple):  # two edited copies (another @mention in the same place)
                pairs.append((kind, False, *changed))
            elif changed is not None and changed != t:
                pairs.append((kind, False, t, changed))
    pool = rng.sample(texts, min(len(texts), 4000))
    pairs += [("nearest other tweet", False, a, b) for a, b in nearest_neighbours(sample, pool)]
    # drawn last, from a generator of its own: the pairs above are the ones earlier runs measured
    pairs += other_companies(texts, args.pairs, random.Random(args.seed + 4))
    return pairs


def embedding_rule(pairs, args) -> list[bool]:
    from core.ml.embedder import load_base_embedder
    from core.ml.runtime import Runtime, apply_threads

    runtime = Runtime(base_model_path=None, device="cpu", threads=args.threads)
    apply_threads(runtime)
    embedder = load_base_embedder(runtime=runtime, max_length=128)
    texts = list(dict.fromkeys([t for _, _, a, b in pairs for t in (a, b)]))
    vectors = dict(zip(texts, embedder.embed(texts), strict=True))
    return [float(vectors[a] @ vectors[b]) >= args.threshold for _, _, a, b in pairs]


def report(name: str, pairs, caught: list[bool]) -> None:
    kinds = list(dict.fromkeys(kind for kind, *_ in pairs))
    tp = sum(c and dup for c, (_, dup, *_) in zip(caught, pairs, strict=True))
    fp = sum(c and not dup for c, (_, dup, *_) in zip(caught, pairs, strict=True))
    positives = sum(dup for _, dup, *_ in pairs)
    precision = tp / (tp + fp) if tp + fp else 1.0
    print(f"{name}: precision {precision:.4f} ({tp} of {tp + fp} caught), recall {tp / positives:.4f}")
    for kind in kinds:
        rows = [(c, dup) for c, (k, dup, *_) in zip(caught, pairs, strict=True) if k == kind]
        what = "caught" if rows[0][1] else "wrongly caught"
        print(f"    {kind:<20} {sum(c for c, _ in rows):>4} of {len(rows):>4} {what}")


def near_rule(pairs, watch_list: list[EntitySpec] | None = None) -> list[bool]:
    """The ingest's rule with ``FM_NEAR_DUPLICATES`` on: the hash, else a shared band and the confirmation,
    with the watch-list entries each text mentions among its anchors (``services.near_copies``)."""
    texts = {t for _, _, a, b in pairs for t in (a, b)}
    prints = {
        t: near.fingerprint(unwrap_text(t), entities=[str(k) for k, _ in tag(t, watch_list or [])])
        for t in texts
    }
    return [text_hash(a) == text_hash(b) or near.near_copy_pair(prints[a], prints[b]) for _, _, a, b in pairs]


def main() -> None:
    args = parse_args()
    pairs = build(args)
    print(
        f"{machine_note()}; {len(pairs)} pairs from {args.pairs} {args.texts} texts (seed {args.seed});"
        f" near-copy rule {near.DEFAULT}"
    )
    report(
        "normalised-text hash alone (FM_NEAR_DUPLICATES off)",
        pairs,
        [text_hash(a) == text_hash(b) for _, _, a, b in pairs],
    )
    report("hash + MinHash near copies (the ingest's rule)", pairs, near_rule(pairs))
    watch_list = [EntitySpec(i, "company", name) for i, name in enumerate(COMPANIES)]
    report("the ingest's rule, COMPANIES on the watch-list", pairs, near_rule(pairs, watch_list))
    report(f"peer: base-encoder cosine >= {args.threshold}", pairs, embedding_rule(pairs, args))


if __name__ == "__main__":
    main()
