"""A model kind that exists only in the tests: TF-IDF + logistic regression (``core.ml.lexical``), trained on
classification uploads. The fake product registers it from its ``AppConfig.ready`` as the recommender will
register its two-tower kind: training, promotion, serving, batch inference, warm-up and rollback then run it
through ``core.registry.kinds`` with no core edit."""

import json
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.ml import artifact
from core.ml.evaluate import evaluate_classifier
from core.ml.lexical import LexicalModel, fit_lexical
from core.ml.predictions import Prediction
from core.registry.kinds import Trained

FORMAT = "fake.tfidf"
LABELS = "labels.json"


class TfidfModel:
    def __init__(self, labels: list[str], lexical: LexicalModel) -> None:
        self.labels, self.lexical = labels, lexical

    def predict(self, texts: list[str]) -> list[Prediction]:
        out = []
        for row in self.lexical.predict_proba(texts).tolist():
            best = max(range(len(row)), key=row.__getitem__)
            out.append(Prediction(self.labels[best], dict(zip(self.labels, row, strict=True)), "tfidf"))
        return out


class TfidfKind:
    name = "tfidf"
    dataset_task = "classification"
    operation = "predict"
    misuse = "This is a TF-IDF model: use /predict."
    batched = True

    def check_settings(self, *, config, search, follow_up) -> dict[str, Any]:
        config = {"c": 10.0} if config is None else config
        if search is not None or follow_up is not None or set(config) - {"c"}:
            raise InvalidInput("A TF-IDF model takes one setting, c.", details={"field": "config"})
        return config

    def train(self, *, job, rows, config, search, runtime, progress, reporter) -> Trained:
        labels = sorted({label for _, label in rows["train"]})
        lexical = fit_lexical(
            texts=[t for t, _ in rows["train"]],
            targets=[labels.index(label) for _, label in rows["train"]],
            n_labels=len(labels),
            c=float(config.get("c", 10.0)),
        )
        model = TfidfModel(labels, lexical)
        held_out = rows["test"] or rows["validation"] or rows["train"]
        metrics = evaluate_classifier(model_or_predictor=model, rows=held_out).to_dict()
        return Trained(model, "tfidf", labels, metrics, list(held_out), {"accuracy": metrics["accuracy"]})

    def save(self, *, model: TfidfModel, directory: Path, extra_manifest: dict[str, Any]) -> dict:
        def write(folder: Path) -> dict:
            model.lexical.save(folder)
            (folder / LABELS).write_text(json.dumps(model.labels))
            manifest = {"format": FORMAT, "files": artifact.file_hashes(folder), **extra_manifest}
            artifact.write_manifest(manifest, folder)
            return manifest

        return artifact.publish_folder(directory, write)

    def after_store(self, *, version, held_out, reporter) -> None:
        return None

    def load(self, *, directory: Path, name: str, runtime, quantized: bool) -> TfidfModel:
        return TfidfModel(json.loads((directory / LABELS).read_text()), LexicalModel.load(directory))

    def score(self, *, model: TfidfModel, rows) -> tuple[float, str]:
        return evaluate_classifier(model_or_predictor=model, rows=rows).accuracy, "accuracy"

    def run(self, *, model: TfidfModel, texts: list[str]):
        return model.predict(texts)
