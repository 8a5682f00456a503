"""The finance monitor's near-duplicate rule, measured on pairs built from the shipped twitter texts.

The rule (``finance_monitor.services.documents``): two documents are the same when their normalised texts are
equal (NFKC, lower case, links, ``RT @user:`` prefixes, @mentions, punctuation and runs of white space
removed), checked at ingest through a unique constraint on the sha256 of that text.

Pairs, from ``--pairs`` shipped texts (``finance_monitor/data/twitter_financial_news``, MIT):

- duplicates (should be caught): a retweet (``RT @user: ...``), a reply (``@user ...``) with ``via @user``,
  the same text with another or an extra tracking link, other case, other white space, re-punctuated, and
  all of these at once;
- different documents (should not be caught), the hard cases: each text's nearest other shipped text by word
  overlap (Jaccard), and edited copies whose meaning changed: another number, another cashtag, a negation,
  another @mention inside the text.

Precision (caught pairs that are duplicates) and recall (duplicates caught) per kind, beside the peer: cosine
similarity of the base encoder's embeddings (the vector a document gets at classification) at
``--threshold``, the "semantic" rule.

    .venv/bin/python bench/fm_duplicates.py --pairs 300
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
from finance_monitor.services.documents import normalise_text, text_hash  # noqa: E402

DATA = ROOT / "finance_monitor" / "data" / "twitter_financial_news"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", type=int, default=300, help="shipped texts each kind of pair is built from"
    )
    parser.add_argument("--threshold", type=float, default=0.95, help="cosine of the embedding peer")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


def shipped() -> list[str]:
    texts = []
    for name in ("topic_train.csv.gz", "sentiment_train.csv.gz"):
        with gzip.open(DATA / name, "rt", encoding="utf-8") as handle:
            texts += [row["text"] for row in csv.DictReader(handle)]
    return list(dict.fromkeys(texts))


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
    texts = shipped()
    sample = rng.sample(texts, args.pairs)
    pairs = [(kind, True, t, make(t, rng)) for kind, make in DUPLICATES.items() for t in sample]
    for kind, edit in EDITS.items():
        for t in sample:
            changed = edit(t, rng)
            if isinstance(changed, tuple):  # two edited copies (another @mention in the same place)
                pairs.append((kind, False, *changed))
            elif changed is not None and changed != t:
                pairs.append((kind, False, t, changed))
    pool = rng.sample(texts, min(len(texts), 4000))
    pairs += [("nearest other tweet", False, a, b) for a, b in nearest_neighbours(sample, pool)]
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


def main() -> None:
    args = parse_args()
    pairs = build(args)
    print(f"{machine_note()}; {len(pairs)} pairs from {args.pairs} shipped texts (seed {args.seed})")
    report(
        "normalised-text hash (the ingest's rule)",
        pairs,
        [text_hash(a) == text_hash(b) for _, _, a, b in pairs],
    )
    report(f"peer: base-encoder cosine >= {args.threshold}", pairs, embedding_rule(pairs, args))


if __name__ == "__main__":
    main()
