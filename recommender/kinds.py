"""The recommender's model kind (``core.registry.kinds``): popularity, item-kNN, EASE and the hybrid ranker.

Registered from ``RecommenderConfig.ready`` before the product, with no edit to core: training, storing,
promotion, the model cache and warm-up reach it through the kind protocol.

Its rows (``train`` receives them from ``recommender.services.training``): the ``train`` split is one row
per event, ``(user, "<item>\\t<weight>\\t<unix time>")``, and ``held_out_events`` the events of the
held-out items in the same form (the served model is fitted again with them); the ``test`` split is the
held-out rows promotion compares on, ``(<JSON list of the user's training items>, <held-out item>)``.
The hybrid (``method: hybrid``, ``recommender.hybrid``) also needs the catalogue: ``rows["catalogue"]`` is a
``hybrid.Catalogue`` (item ids, texts and their vectors, boosts). ``score`` is NDCG@10 there.
``run`` takes item ids (a session) and returns the top items.
"""

import json
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.ml import artifact
from core.registry.kinds import Trained
from recommender import hybrid, ranking

RECOMMENDER = "recommender"
APP, TASK = "recommender", "ranking"  # where the registry keeps the recommender's versions
FORMAT = "trellis.recommender"
CONFIG_KEYS = {"method", "ease_lambda", "neighbours", "half_life_days"}
HYBRID_KEYS = {
    "method",
    "ease_lambdas",
    "decay_days",
    "neighbours",
    "trend_days",
    "rising_days",
    "validation",
    "validation_days",
    "validation_share",
    "validation_users",
    "history_decays",
    "sequence_window",
    "sequence_recent",
    "sequence_decay",
    "boost_weight",
    "cold_slots",
    "tower_epochs",
    "tower_dim",
    "seed",
}
Model = ranking.RankModel | hybrid.HybridModel


def hybrid_config(config: dict[str, Any]) -> hybrid.HybridConfig:
    unknown = sorted(set(config) - HYBRID_KEYS)
    if unknown:
        raise InvalidInput(f"Unknown training settings: {', '.join(unknown)}.", details={"field": "config"})
    try:
        cfg = hybrid.HybridConfig.from_dict(config)
        cfg.validate()
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Bad training settings: {exc}.", details={"field": "config"}) from None
    return cfg


def rank_config(config: dict[str, Any]) -> ranking.RankConfig:
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise InvalidInput(f"Unknown training settings: {', '.join(unknown)}.", details={"field": "config"})
    try:
        cfg = ranking.RankConfig(**config)
        cfg.validate()
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"Bad training settings: {exc}.", details={"field": "config"}) from None
    return cfg


def encode_interaction(row: ranking.Interaction) -> tuple[str, str]:
    user, item, weight, when = row
    return user, f"{item}\t{weight!r}\t{when!r}"


def decode_interaction(row: tuple[str, str]) -> ranking.Interaction:
    item, weight, when = row[1].rsplit("\t", 2)
    return row[0], item, float(weight), float(when)


def held_out_rows(held_out: list[ranking.HeldOut]) -> list[tuple[str, str]]:
    return [(json.dumps(history), target) for history, target in held_out]


def _held_out(rows) -> list[ranking.HeldOut]:
    return [(list(json.loads(history)), target) for history, target in rows]


class RecommenderKind:
    name = RECOMMENDER
    dataset_task = "interactions"  # trained from the organisation's events, never from a dataset upload
    operation = "recommend"
    misuse = "This is a recommender: ask /api/recommender/recommendations, not /predict or /embed."
    batched = False

    def check_settings(self, *, config, search, follow_up) -> dict[str, Any]:
        if search is not None or follow_up is not None:
            raise InvalidInput("A recommender trains one method per job: no search or follow-up.")
        config = {"method": "ease"} if config is None else config
        if not isinstance(config, dict):
            raise InvalidInput("config must be an object.", details={"field": "config"})
        if config.get("method") == "hybrid":
            hybrid_config(config)
        else:
            rank_config(config)
        return config

    def train(self, *, job, rows, config, search, runtime, progress, reporter) -> Trained:
        if config.get("method") == "hybrid":
            return self._train_hybrid(rows=rows, config=config, reporter=reporter)
        cfg = rank_config(config)
        train = [decode_interaction(r) for r in rows["train"]]
        held_out = list(rows["test"])
        everything = train + [decode_interaction(r) for r in rows.get("held_out_events", [])]
        try:
            evaluation = ranking.fit(config=cfg, train=train)
            reporter.progress(0.5, f"Fitted {cfg.method} without the held-out items", force=True)
            model = ranking.fit(config=cfg, train=everything)
        except ValueError as exc:
            raise InvalidInput(f"Cannot train: {exc}.") from None
        model.evaluation = evaluation
        reporter.progress(0.8, f"Fitted {cfg.method} on {len(model.items)} items", force=True)
        metrics = ranking.evaluate(model=model, held_out=_held_out(held_out))
        metrics.update(items=float(len(model.items)), events=float(len(everything)))
        reporter.progress(0.9, "Evaluated on the held-out items", force=True)
        summary = {key: metrics[key] for key in ("ndcg@10", "recall@10", "hr@10")}
        return Trained(model, cfg.method, [], metrics, held_out, summary)

    def _train_hybrid(self, *, rows, config, reporter) -> Trained:
        cfg = hybrid_config(config)
        train = [decode_interaction(r) for r in rows["train"]]
        everything = train + [decode_interaction(r) for r in rows.get("held_out_events", [])]
        catalogue = rows["catalogue"]
        try:
            evaluation = hybrid.fit(
                config=cfg,
                train=train,
                catalogue=catalogue,
                progress=lambda message: reporter.progress(0.3, message, force=True),
            )
            reporter.progress(0.6, "Fitted the hybrid without the held-out items", force=True)
            model = hybrid.fit_like(model=evaluation, train=everything, catalogue=catalogue)
        except ValueError as exc:
            raise InvalidInput(f"Cannot train: {exc}.") from None
        model.evaluation = evaluation
        held_out = list(rows["test"])
        metrics = ranking.evaluate(model=model, held_out=_held_out(held_out))  # type: ignore[arg-type]
        metrics.update(
            items=float(len(model.items)),
            events=float(len(everything)),
            **{f"weight_{k}": float(v) for k, v in model.weights.items()},
            **{f"validation_{k}": float(v) for k, v in evaluation.validation.items()},
            **{k: float(v) for k, v in model.setting.items()},
        )
        reporter.progress(0.9, "Evaluated on the held-out items", force=True)
        summary = {key: metrics[key] for key in ("ndcg@10", "recall@10", "hr@10")}
        return Trained(model, "hybrid", [], metrics, held_out, summary)

    def save(self, *, model: Model, directory: Path, extra_manifest: dict[str, Any]) -> dict:
        def write(folder: Path) -> dict:
            if isinstance(model, hybrid.HybridModel):
                hybrid.save(model, folder)
            else:
                ranking.save(model, folder)
            manifest = {
                "format": FORMAT,
                "kind": RECOMMENDER,
                "method": model.config.method,
                "files": artifact.file_hashes(folder),
                "library_versions": artifact.library_versions(),
                **extra_manifest,
            }
            artifact.write_manifest(manifest, folder)
            return manifest

        return artifact.publish_folder(directory, write)

    def after_store(self, *, version, held_out, reporter) -> None:
        return None

    def load(self, *, directory: Path, name: str, runtime, quantized: bool) -> Model:
        return hybrid.load(directory) if hybrid.is_hybrid(directory) else ranking.load(directory)

    def score(self, *, model: Model, rows) -> tuple[float, str]:
        return ranking.evaluate(model=model, held_out=_held_out(rows))["ndcg@10"], "NDCG@10"  # type: ignore[arg-type]

    def run(self, *, model: Model, texts: list[str]):
        scores = model.scores({item: 1.0 for item in texts})
        return [model.items[i] for i in scores.argsort()[::-1][:10]]
