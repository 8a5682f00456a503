"""Text forms (``core.ml.textforms``): the form a version is trained with travels in its manifest, and every
path that asks the version reads texts in it; a version without one reads texts as given."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from ml_helpers import small_split

from core.ml import textforms
from core.ml.errors import MLError
from core.ml.textforms import TextForm, register_text_form

REF = re.compile(r"\s*\bref:\S+")


def no_refs(text: str) -> str:
    return REF.sub("", text).strip()


FORM = TextForm("no-refs", no_refs, "order references removed")


@pytest.fixture(scope="module")
def formed_model(runtime, train_rows, test_rows):
    """A head model with a TF-IDF member, trained on rows that each carry a random order reference that the
    form removes: the model never sees one."""
    from core.ml.train import TrainConfig, train_classifier

    register_text_form(FORM)
    rows = [(f"{text} ref:{i * 7919 % 100003:X}Q", label) for i, (text, label) in enumerate(train_rows)]
    config = TrainConfig(method="head", lexical=True, text_form="no-refs")
    return train_classifier(config=config, train=rows, validation=small_split(test_rows, 2), runtime=runtime)


def _proba(model, texts):
    return model.predict_proba(texts)


def test_a_form_is_registered_once_by_name_and_an_unknown_one_is_refused():
    from core.ml.train import TrainConfig

    register_text_form(FORM)
    register_text_form(FORM)  # the same form again: a no-op
    assert textforms.text_form("no-refs") is no_refs and textforms.text_form("") is None
    with pytest.raises(MLError, match="registered twice"):
        register_text_form(TextForm("no-refs", lambda t: t))
    with pytest.raises(MLError, match="letters, digits and dashes"):
        register_text_form(TextForm("no refs/", no_refs))
    with pytest.raises(MLError, match="'missing', which nothing installed provides"):
        textforms.text_form("missing")
    with pytest.raises(MLError, match="text_form 'missing' is not a registered text form"):
        TrainConfig(method="head", text_form="missing").validate()


def test_the_form_is_trained_recorded_and_applied_on_every_path(formed_model, runtime, tmp_path, test_rows):
    from core.ml.artifact import save_artifact
    from core.ml.predictor import embeds_like, int8_copy
    from core.ml.serving import load_predictor

    texts = [text for text, _ in small_split(test_rows, 1)][:20]
    raw = [f"{text} ref:ZQ81XPW{i}" for i, text in enumerate(texts)]
    assert [no_refs(t) for t in raw] == texts
    # trained on the rows in the form: the TF-IDF member learnt no reference's words or characters
    assert formed_model.lexical is not None
    vocabulary = {term for v in formed_model.lexical.vectorizers.values() for term in v.vocabulary_}
    assert vocabulary and not any("ref:" in term or term == "ref" for term in vocabulary)
    # the trained model reads the raw texts as the form gives them
    assert torch.allclose(_proba(formed_model, raw), _proba(formed_model, texts), atol=1e-6)
    assert [p.label for p in formed_model.predict(raw)] == [p.label for p in formed_model.predict(texts)]

    directory = tmp_path / "v1"
    manifest = save_artifact(model=formed_model, directory=directory, extra_manifest={})
    assert manifest["hyperparameters"]["text_form"] == "no-refs"
    predictor = load_predictor(directory=directory, version="v1", runtime=runtime)
    assert predictor.text_form == "no-refs" and "/no-refs:" in predictor.encoder_key
    assert torch.allclose(predictor.predict_proba(raw), predictor.predict_proba(texts), atol=1e-5)
    # embed and the head each read raw texts in the form: the shared pass gives what predict gives
    shared = predictor.head_proba(predictor.embed(raw), raw)
    assert torch.allclose(shared, predictor.predict_proba(texts), atol=1e-5)
    assert torch.allclose(shared, _proba(formed_model, texts), atol=1e-4)
    quantized = int8_copy(predictor)
    assert quantized.text_form == "no-refs" and quantized.encoder_key.endswith("/no-refs:int8@cpu")
    assert torch.allclose(quantized.predict_proba(raw), quantized.predict_proba(texts), atol=1e-5)

    class Base:  # what embeds_like compares the predictor's vectors with: the base encoder on raw texts
        identity = {"sha256": manifest["base_model"]["sha256"]}
        device, max_length = "cpu", 512

    assert not embeds_like(predictor, Base(), raw)  # its vectors are of the texts without their references

    # a version trained before its product adopted the form (no text_form in its manifest): texts as given
    older = tmp_path / "v0"
    shutil.copytree(directory, older)
    stored = json.loads((older / "manifest.json").read_text())
    del stored["hyperparameters"]["text_form"]
    (older / "manifest.json").write_text(json.dumps(stored))
    plain = load_predictor(directory=older, version="v0", runtime=runtime)
    assert plain.text_form == "" and "/no-refs" not in plain.encoder_key
    assert torch.allclose(plain.predict_proba(texts), predictor.predict_proba(texts), atol=1e-5)
    assert (plain.predict_proba(raw) - predictor.predict_proba(raw)).abs().max() > 1e-3

    # a version whose form nothing installed provides fails to load with the reason
    stored["hyperparameters"]["text_form"] = "gone"
    (older / "manifest.json").write_text(json.dumps(stored))
    with pytest.raises(MLError, match="'gone', which nothing installed provides"):
        load_predictor(directory=older, version="v0", runtime=runtime)
