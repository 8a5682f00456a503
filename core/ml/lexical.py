"""An optional lexical member: TF-IDF word and character n-grams with a logistic regression.

Frozen sentence embeddings miss exact wording (product names, "top up" vs "transfer"); a TF-IDF model
catches it. Blending the two models' probabilities (weight chosen on validation) added about a point on
BANKING77 (see BENCHMARKS.md). Stored without pickle: vocabularies in JSON, idf and weights in safetensors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy.sparse import csr_matrix, hstack

from core.ml.errors import MLError

VOCAB_FILE = "lexical.json"
WEIGHTS_FILE = "lexical.safetensors"
VECTORIZERS: dict[str, dict[str, Any]] = {
    "word": {"analyzer": "word", "ngram_range": (1, 2), "sublinear_tf": True, "min_df": 1},
    "char": {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True, "min_df": 2},
}
BLEND_GRID = tuple(i / 20 for i in range(21))
FEW_TEXTS = 8  # up to this many texts, predictions skip the sparse matrix (``LexicalModel._few_logits``)


SMALL_DATA_ROWS = 100  # below this, keep character n-grams seen once (min_df=1)


def _vectorizer(name: str, rows: int | None = None) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer  # not at import: sklearn is slow to import

    params = dict(VECTORIZERS[name])
    if rows is not None and rows < SMALL_DATA_ROWS:
        params["min_df"] = 1
    return TfidfVectorizer(dtype=np.float32, **params)


@dataclass
class LexicalModel:
    """Fitted vectorizers plus a linear layer over their concatenated features."""

    vectorizers: dict[str, Any]
    coef: np.ndarray  # (n_labels, n_features)
    intercept: np.ndarray  # (n_labels,)
    # what ``features`` reads, made once: each vectorizer's analyzer and vocabulary, its first column and tf
    # rule, the idf of every column, and the weights transposed (n_features, n_labels) in C order
    _plan: list[tuple[Any, dict[str, int]]] = field(init=False, repr=False)
    _offsets: np.ndarray = field(init=False, repr=False)
    _sublinear: np.ndarray = field(init=False, repr=False)
    _idf: np.ndarray = field(init=False, repr=False)
    _coef_t: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        vectorizers = list(self.vectorizers.values())
        self._plan = [(v.build_analyzer(), v.vocabulary_) for v in vectorizers]
        sizes = [len(v.idf_) for v in vectorizers]
        self._offsets = np.cumsum([0, *sizes[:-1]]).astype(np.int64)
        self._sublinear = np.array([v.sublinear_tf for v in vectorizers], dtype=bool)
        self._idf = np.concatenate([np.asarray(v.idf_, dtype=np.float32) for v in vectorizers])
        self._coef_t = np.ascontiguousarray(self.coef.T, dtype=np.float32)

    def _terms(self, text: str) -> Iterator[tuple[int, dict[int, int]]]:
        """Per vectorizer that finds a known term in ``text``: its place in the plan and {column: count}."""
        for place, (analyze, vocabulary) in enumerate(self._plan):
            found: dict[int, int] = {}
            for term in analyze(text):
                j = vocabulary.get(term)
                if j is not None:
                    found[j] = found.get(j, 0) + 1
            if found:
                yield place, found

    def features(self, texts: Sequence[str]) -> csr_matrix:
        """(N, n_features) float32 TF-IDF rows, each vectorizer's part L2-normalised: what the fitted
        vectorizers' ``transform`` gives (``tests/core/ml/test_lexical.py`` compares them), without their
        per-call checks and matrix assembly, which cost a one-text call about 2 ms (20x the counting)."""
        columns: list[int] = []  # each vectorizer's own column numbers
        counts: list[int] = []
        # per (text, vectorizer) part that has a term: the vectorizer's place in the plan, and its number of
        # terms (each part is L2-normalised alone)
        parts: list[int] = []
        lengths: list[int] = []
        indptr = [0]
        for text in texts:
            for place, found in self._terms(text):
                columns.extend(found.keys())
                counts.extend(found.values())
                parts.append(place)
                lengths.append(len(found))
            indptr.append(len(columns))
        index = np.asarray(columns, dtype=np.int64) + np.repeat(self._offsets[parts], lengths)
        values = np.asarray(counts, dtype=np.float32)
        logged = np.repeat(self._sublinear[parts], lengths)
        values[logged] = np.log(values[logged]) + 1.0
        values *= self._idf[index]
        if lengths:
            starts = np.cumsum([0, *lengths[:-1]])
            norms = np.sqrt(np.add.reduceat(values * values, starts))
            values /= np.repeat(np.where(norms > 0, norms, 1.0), lengths).astype(np.float32)
        return csr_matrix(
            (values, index, np.asarray(indptr, dtype=np.int64)), shape=(len(texts), len(self._coef_t))
        )

    def _few_logits(self, texts: Sequence[str]) -> np.ndarray:
        """``features(texts) @ coef.T`` for a few texts (a chat message) without the sparse matrix: each
        part's TF-IDF values times the weight rows of its columns. The same sums in another order (float32
        rounding apart); assembling and multiplying the matrix cost a one-text call 70 of its 120 us."""
        out = np.zeros((len(texts), self._coef_t.shape[1]), dtype=np.float32)
        for row, text in enumerate(texts):
            for place, found in self._terms(text):
                index = np.fromiter(found.keys(), dtype=np.int64, count=len(found)) + self._offsets[place]
                values = np.fromiter(found.values(), dtype=np.float32, count=len(found))
                if self._sublinear[place]:
                    values = np.log(values) + np.float32(1.0)
                values *= self._idf[index]
                norm = np.sqrt(values @ values)
                if norm > 0:
                    values /= norm
                out[row] += values @ self._coef_t[index]
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(N, n_labels) probabilities, columns in the model's label order."""
        if len(texts) <= FEW_TEXTS:
            logits = self._few_logits(texts) + self.intercept
        else:
            logits = np.asarray(self.features(texts) @ self._coef_t) + self.intercept
        logits = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)

    def save(self, folder: Path) -> None:
        vocab = {name: {k: int(i) for k, i in v.vocabulary_.items()} for name, v in self.vectorizers.items()}
        (folder / VOCAB_FILE).write_text(json.dumps(vocab, sort_keys=True), encoding="utf-8")
        tensors = {f"idf.{name}": v.idf_.astype(np.float32) for name, v in self.vectorizers.items()}
        tensors |= {"coef": self.coef.astype(np.float32), "intercept": self.intercept.astype(np.float32)}
        save_file(tensors, str(folder / WEIGHTS_FILE))

    @classmethod
    def load(cls, folder: Path) -> LexicalModel:
        vocab = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / WEIGHTS_FILE))
        vectorizers = {}
        for name in VECTORIZERS:
            vectorizer = _vectorizer(name)
            vectorizer.vocabulary_ = vocab[name]
            vectorizer.idf_ = tensors[f"idf.{name}"]
            vectorizers[name] = vectorizer
        return cls(vectorizers, tensors["coef"], tensors["intercept"])


def fit_lexical(
    *, texts: Sequence[str], targets: Sequence[int], n_labels: int, c: float = 10.0
) -> LexicalModel:
    """Fit the TF-IDF vectorizers and a multinomial logistic regression (every label must occur)."""
    from sklearn.linear_model import LogisticRegression  # not at import: sklearn is slow to import

    vectorizers = {name: _vectorizer(name, len(texts)) for name in VECTORIZERS}
    try:
        features = hstack([v.fit_transform(list(texts)) for v in vectorizers.values()]).tocsr()
    except ValueError as exc:  # e.g. texts with no word characters at all
        raise MLError(f"Cannot fit the lexical model on these texts: {exc}.")
    classifier = LogisticRegression(C=c, max_iter=2000).fit(features, np.asarray(targets))
    coef = np.zeros((n_labels, features.shape[1]), dtype=np.float32)
    intercept = np.full(n_labels, -1e4, dtype=np.float32)  # a label absent from training is never predicted
    if (
        len(classifier.classes_) == 2
    ):  # sklearn keeps one row for binary problems: softmax([0, z]) == sigmoid(z)
        coef[classifier.classes_[0]], intercept[classifier.classes_[0]] = 0.0, 0.0
        coef[classifier.classes_[1]], intercept[classifier.classes_[1]] = (
            classifier.coef_[0],
            classifier.intercept_[0],
        )
    else:
        coef[classifier.classes_] = classifier.coef_
        intercept[classifier.classes_] = classifier.intercept_
    return LexicalModel(vectorizers, coef, intercept)


def choose_blend_weight(neural: np.ndarray, lexical: np.ndarray, targets: np.ndarray) -> float:
    """Weight w of the neural model in w * neural + (1 - w) * lexical that maximises validation accuracy."""
    scores = [float(((w * neural + (1 - w) * lexical).argmax(1) == targets).mean()) for w in BLEND_GRID]
    best = max(scores)
    # among ties, the weight closest to an even blend
    return min((w for w, s in zip(BLEND_GRID, scores, strict=True) if s == best), key=lambda w: abs(w - 0.5))


def blend(neural: Any, lexical: LexicalModel | None, weight: float, texts: Sequence[str]) -> Any:
    """``weight * neural + (1 - weight) * lexical`` on (N, n_labels) torch probabilities."""
    if lexical is None or not len(texts):
        return neural
    lex = neural.new_tensor(lexical.predict_proba(texts).astype(np.float32))  # same dtype and device
    return weight * neural + (1.0 - weight) * lex
