"""Helpers shared by the core/ml tests (a module, not conftest, so tests can import it by a unique name)."""

from __future__ import annotations

import csv
from pathlib import Path

DATA = Path(__file__).resolve().parents[3] / "data" / "banking77"


def read_rows(name: str) -> list[tuple[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        return [(row["text"], row["category"]) for row in csv.DictReader(handle)]


def small_split(rows: list[tuple[str, str]], per_label: int) -> list[tuple[str, str]]:
    """The first ``per_label`` rows of each label, in file order."""
    seen: dict[str, int] = {}
    out = []
    for text, label in rows:
        if seen.get(label, 0) < per_label:
            seen[label] = seen.get(label, 0) + 1
            out.append((text, label))
    return out
