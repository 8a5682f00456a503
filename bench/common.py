"""Benchmark helpers: the TF-IDF + logistic-regression peer, ensembling, scoring, result tables."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Rows = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Row:
    """One line of a results table."""

    name: str
    accuracy: float
    macro_f1: float
    train_s: float
    note: str = ""


def score(gold: Sequence[str], predicted: Sequence[str]) -> tuple[float, float]:
    from sklearn.metrics import accuracy_score, f1_score

    return float(accuracy_score(gold, predicted)), float(f1_score(gold, predicted, average="macro"))


def tfidf_lr(train: Rows, c: float = 10.0):  # -> fitted sklearn pipeline
    """Word 1-2-gram + char 2-5-gram TF-IDF features and a multinomial logistic regression."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2),
    )
    model = make_pipeline(features, LogisticRegression(C=c, max_iter=2000))
    model.fit([t for t, _ in train], [label for _, label in train])
    return model


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def aligned_proba(model, texts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """sklearn probabilities with columns in ``labels`` order."""
    proba = model.predict_proba(list(texts))
    index = {label: i for i, label in enumerate(model.classes_)}
    return proba[:, [index[label] for label in labels]]


def best_blend(a: np.ndarray, b: np.ndarray, gold_idx: np.ndarray) -> float:
    """The weight w in 0..1 (step 0.05) maximising accuracy of w*a + (1-w)*b on validation rows."""
    weights = np.linspace(0.0, 1.0, 21)
    accs = [float(((w * a + (1 - w) * b).argmax(1) == gold_idx).mean()) for w in weights]
    return float(weights[int(np.argmax(accs))])


def stratified_split(rows: Rows, fraction: float, seed: int) -> tuple[list, list]:
    """(rest, held_out) with ``fraction`` of each label held out."""
    from sklearn.model_selection import train_test_split

    labels = [label for _, label in rows]
    rest, held = train_test_split(list(rows), test_size=fraction, random_state=seed, stratify=labels)
    return rest, held


def print_table(title: str, rows: Sequence[Row]) -> None:
    print(f"\n## {title}\n")
    print("| system | accuracy | macro-F1 | train s | note |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.name} | {r.accuracy * 100:.2f}% | {r.macro_f1 * 100:.2f} | {r.train_s:.0f} | {r.note} |")


def add_launchers_argument(parser, servers: str) -> None:
    """``--launchers``: how a bench's web processes get their connections, one ``servers`` per launcher:
    ``core.serve`` deals each connection to the least busy process (as ``bin/run-all`` serves), uvicorn's
    ``--workers`` share one listening socket."""
    parser.add_argument(
        "--launchers",
        nargs="+",
        default=["core.serve"],
        choices=["core.serve", "uvicorn"],
        help=f"how the web processes get their connections (core.serve: as bin/run-all); {servers} per"
        " launcher",
    )


def machine_note() -> str:
    load = os.getloadavg()[0]
    return f"cpus={os.cpu_count()} load1={load:.2f}"


def member_rows(model, name: str, texts: list[str], gold: list[str]) -> list[Row]:
    """Rows for the blended model and for each of its members alone."""
    labels = model.labels
    pick = lambda probs: [labels[i] for i in probs.argmax(1)]  # noqa: E731
    weight, lexical = model.blend_weight, model.lexical
    seconds = model.stats.train_seconds
    model.lexical = None
    neural = model.predict_proba(texts).numpy()
    model.lexical = lexical
    lex = lexical.predict_proba(texts)
    blended = weight * neural + (1 - weight) * lex
    return [
        Row(f"{name}: lexical member alone (TF-IDF + LR)", *score(gold, pick(lex)), seconds, "same run"),
        Row(
            f"{name}: neural member alone",
            *score(gold, pick(neural)),
            seconds,
            f"head C={model.stats.head_c}",
        ),
        Row(
            f"{name}: neural + lexical blend (product)",
            *score(gold, pick(blended)),
            seconds,
            f"w={weight:.2f}",
        ),
    ]


def clinc150(folder: Path, limit: int | None = None) -> dict[str, list]:
    """CLINC150's ``data_full.json`` (Larson et al., 2019), every ``limit``-th row of each part: ``train``,
    ``val`` and ``test`` as (text, intent) pairs, ``oos_train``, ``oos_val`` and ``oos_test`` as texts."""
    data = json.loads((folder / "data_full.json").read_text())
    step = limit or 1
    parts: dict[str, list] = {}
    for name in ("train", "val", "test"):
        parts[name] = [(t, i) for t, i in data[name]][::step]
    for name in ("oos_train", "oos_val", "oos_test"):
        parts[name] = [t for t, _ in data[name]][::step]
    return parts
