"""Rebuild the shipped, de-duplicated twitter financial news training sets from the originals.

Usage: ``python finance_monitor/data/twitter_financial_news/build.py [../shared/data]``

For each set (sentiment, topic): the train split's texts are normalised as the monitor normalises documents
(``finance_monitor.services.documents.normalise_text``: lower case, NFKC, links, ``RT @user:``, mentions and
punctuation removed); rows whose normalised text is empty, occurs more than once in train (the first kept;
a text with conflicting labels dropped entirely), or occurs in the validation split are left out. Labels are
written by name, the CSV gzipped (``text,label``). The validation splits are not shipped: they are for
evaluation (``bench/``).
"""

import csv
import gzip
import hashlib
import io
import re
import sys
import unicodedata
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent

SENTIMENT = {"0": "negative", "1": "positive", "2": "neutral"}  # Bearish, Bullish, Neutral
TOPICS = {
    "0": "Analyst Update",
    "1": "Fed | Central Banks",
    "2": "Company | Product News",
    "3": "Treasuries | Corporate Debt",
    "4": "Dividend",
    "5": "Earnings",
    "6": "Energy | Oil",
    "7": "Financials",
    "8": "Currencies",
    "9": "General News | Opinion",
    "10": "Gold | Metals | Materials",
    "11": "IPO",
    "12": "Legal | Regulation",
    "13": "M&A | Investments",
    "14": "Macro",
    "15": "Markets",
    "16": "Politics",
    "17": "Personnel Change",
    "18": "Stock Commentary",
    "19": "Stock Movement",
}
SETS = {
    "sentiment": ("twitter_financial_news_sentiment", "sent_train.csv", "sent_valid.csv", SENTIMENT),
    "topic": ("twitter_financial_news_topic", "train_data.csv", "valid_data.csv", TOPICS),
}

# the same normalisation as finance_monitor.services.documents (kept here so this script runs without Django)
_LINK = re.compile(r"https?://\S+|www\.\S+")
_RETWEET = re.compile(r"^\s*rt\s+@\w+:?\s*")
_MENTION = re.compile(r"@\w+")
_NON_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _RETWEET.sub("", text)
    text = _LINK.sub(" ", text)
    text = _MENTION.sub(" ", text)
    return _NON_WORD.sub(" ", text).strip()


def read(path: Path, names: dict[str, str]) -> list[tuple[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [(row["text"], names[row["label"].strip()]) for row in csv.DictReader(handle)]


def deduplicate(train: list[tuple[str, str]], valid: list[tuple[str, str]]) -> tuple[list, dict]:
    held_out = {normalise(text) for text, _ in valid}
    labels: dict[str, set[str]] = defaultdict(set)
    for text, label in train:
        labels[normalise(text)].add(label)
    kept, seen = [], set()
    dropped = {"empty": 0, "in_validation": 0, "conflicting": 0, "duplicate": 0}
    for text, label in train:
        key = normalise(text)
        reason = (
            "empty"
            if not key
            else "in_validation"
            if key in held_out
            else "conflicting"
            if len(labels[key]) > 1
            else "duplicate"
            if key in seen
            else ""
        )
        if reason:
            dropped[reason] += 1
            continue
        seen.add(key)
        kept.append((text, label))
    return kept, dropped


def main() -> None:
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parents[3] / "shared" / "data")
    for name, (folder, train_file, valid_file, names) in SETS.items():
        train = read(shared / folder / train_file, names)
        valid = read(shared / folder / valid_file, names)
        kept, dropped = deduplicate(train, valid)
        out = HERE / f"{name}_train.csv.gz"
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["text", "label"])
        writer.writerows(kept)
        out.write_bytes(gzip.compress(text.getvalue().encode(), mtime=0))  # mtime 0: the same bytes each run
        digest = hashlib.sha256(out.read_bytes()).hexdigest()
        print(f"{name}: {len(train)} train rows -> {len(kept)} kept; dropped {dropped}; {out.name} {digest}")


if __name__ == "__main__":
    main()
