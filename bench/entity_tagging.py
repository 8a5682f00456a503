"""Entity tagging on the shipped labelled set: precision and recall of the finance monitor's tagger beside a
naive peer (the name, aliases or ticker as a plain word), in the same run. No database query is made
(Django is set up because the tagger's module defines the models it tags).

    .venv/bin/python -m bench.entity_tagging
"""

import json
import os
from pathlib import Path

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django.setup()

from finance_monitor.services.entities import EntitySpec, naive_tag, tag  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "finance_monitor" / "data"


def load():
    watch = json.loads((DATA / "entity_watchlist.json").read_text())
    specs = [EntitySpec(e["name"], e["kind"], e["name"], e["ticker"], tuple(e["aliases"])) for e in watch]
    rows = [json.loads(line) for line in (DATA / "entity_tagging.jsonl").read_text().splitlines() if line]
    return specs, rows


def score(tagger, specs, rows) -> dict:
    tp = fp = fn = 0
    for row in rows:
        got = {key for key, _ in tagger(row["text"], specs)}
        want = set(row["entities"])
        tp, fp, fn = tp + len(got & want), fp + len(got - want), fn + len(want - got)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn}


def main() -> None:
    specs, rows = load()
    print(
        f"{len(rows)} sentences, {sum(len(r['entities']) for r in rows)} labelled mentions,"
        f" {len(specs)} watch-list entries"
    )
    for name, tagger in (("finance_monitor tagger", tag), ("naive word match (peer)", naive_tag)):
        s = score(tagger, specs, rows)
        print(
            f"{name:26s} precision {s['precision']:.3f}  recall {s['recall']:.3f}  F1 {s['f1']:.3f}"
            f"  (tp {s['tp']}, fp {s['fp']}, fn {s['fn']})"
        )


if __name__ == "__main__":
    main()
