"""The optional TF-IDF member: fitted, blended with the encoder, saved without pickle and reloaded exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ml_helpers import small_split

from core.ml.artifact import read_manifest, save_artifact
from core.ml.evaluate import evaluate_classifier
from core.ml.lexical import FEW_TEXTS, LexicalModel, choose_blend_weight, fit_lexical
from core.ml.serving import load_predictor
from core.ml.train import TrainConfig, train_classifier


def test_head_with_lexical_member_round_trips(runtime, train_rows, test_rows, tmp_path):
    config = TrainConfig(method="head", lexical=True)
    model = train_classifier(
        config=config, train=train_rows, validation=small_split(test_rows, 3), runtime=runtime
    )
    assert model.lexical is not None and 0.0 <= model.blend_weight <= 1.0
    assert evaluate_classifier(model_or_predictor=model, rows=test_rows).accuracy >= 0.9
    manifest = save_artifact(model=model, directory=tmp_path / "v1", extra_manifest={})
    assert manifest["lexical"] == {"blend_weight": model.blend_weight}
    assert {"lexical.json", "lexical.safetensors"} <= read_manifest(tmp_path / "v1")["files"].keys()
    predictor = load_predictor(directory=tmp_path / "v1", version="v1", runtime=runtime)
    texts = [t for t, _ in test_rows]
    assert torch.allclose(predictor.predict_proba(texts), model.predict_proba(texts), atol=1e-6)


def test_binary_problem_and_absent_label(tmp_path):
    texts = [
        "good profit rise",
        "strong growth",
        "loss widened",
        "sales fell sharply",
        "profit up",
        "costs rose",
    ]
    targets = [0, 0, 2, 2, 0, 2]  # label 1 never occurs in training
    model = fit_lexical(texts=texts, targets=targets, n_labels=3)
    probs = model.predict_proba(["profit rise", "sales fell"])
    assert probs.shape == (2, 3)
    assert np.allclose(probs.sum(axis=1), 1.0) and probs[:, 1].max() < 1e-6
    assert list(probs.argmax(axis=1)) == [0, 2]
    model.save(tmp_path)
    again = LexicalModel.load(tmp_path)
    assert np.allclose(again.predict_proba(["profit rise", "sales fell"]), probs, atol=1e-6)


def test_blend_weight_prefers_the_better_model():
    targets = np.array([0, 1, 0, 1])
    right = np.eye(2)[targets] * 0.9 + 0.05
    wrong = np.eye(2)[1 - targets] * 0.9 + 0.05
    assert choose_blend_weight(right, wrong, targets) > 0.5
    assert choose_blend_weight(wrong, right, targets) < 0.5
    assert choose_blend_weight(right, right, targets) == pytest.approx(0.5)


def test_unusable_texts_raise_a_user_facing_error():
    from core.ml.errors import MLError

    with pytest.raises(MLError, match="lexical"):
        fit_lexical(texts=["!!", "??", "..."], targets=[0, 1, 0], n_labels=2)


def test_features_are_what_the_fitted_vectorizers_give():
    """``LexicalModel.features`` counts and weighs n-grams itself (no per-call sklearn checks): it must give
    the vectorizers' own ``transform``, for texts with repeats, unknown words, accents, case and no word."""
    from scipy.sparse import hstack

    texts = [
        "Profit rose sharply, profit beat estimates",
        "sales fell; costs rose and margins shrank",
        "Dividend cut announced by the board",
        "CEO résumé: growth growth growth",
        "shares flat after earnings call",
        "loss widened as revenue dropped",
    ] * 3
    model = fit_lexical(texts=texts, targets=[0, 1, 1, 0, 2, 1] * 3, n_labels=3)
    asked = [
        "profit rose, profit rose again",
        "Résumé of the CEO",
        "",
        "!!! ???",
        "zzz unknown qqq",
        "SALES FELL",
        "Sales fell",
    ]
    expected = hstack([v.transform(asked) for v in model.vectorizers.values()]).tocsr()
    got = model.features(asked)
    assert got.shape == expected.shape
    assert np.allclose(got.toarray(), expected.toarray(), atol=1e-6)
    assert expected.nnz > 0 and got.nnz == expected.nnz
    logits = np.asarray(expected @ model.coef.T) + model.intercept
    reference = np.exp(logits - logits.max(axis=1, keepdims=True))
    reference /= reference.sum(axis=1, keepdims=True)
    assert len(asked) <= FEW_TEXTS  # a few texts: the weights of each text's columns, no sparse matrix
    assert np.allclose(model.predict_proba(asked), reference, atol=1e-6)
    many = asked * 2  # more than a few: the sparse product
    assert len(many) > FEW_TEXTS
    assert np.allclose(model.predict_proba(many), np.vstack([reference, reference]), atol=1e-6)
    assert model.predict_proba([]).shape == (0, 3)
