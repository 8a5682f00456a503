"""The recommender's model kind (``core.registry.kinds``): popularity, item-kNN and EASE rankers.

Registered from ``RecommenderConfig.ready`` before the product, with no edit to core: training, storing,
promotion, the model cache and warm-up reach it through the kind protocol.

Its rows (``train`` receives them from ``recommender.services.training``): the ``train`` split is one row
per event, ``(user, "<item>\\t<weight>\\t<unix time>")``, and ``held_out_events`` the events of the
held-out items in the same form (the served model is fitted again with them); the ``test`` split is the
held-out rows promotion compares on, ``(<JSON list of the user's training items>, <held-out item>)``.
``score`` is NDCG@10 there.
``run`` takes item ids (a session) and returns the top items.
"""

import json
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from core.ml import artifact
from core.registry.kinds import Trained
from recommender import ranking

RECOMMENDER = "recommender"
FORMAT = "trellis.recommender"
CONFIG_KEYS = {"method", "ease_lambda", "neighbours", "half_life_days"}


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
        rank_config(config)
        return config

    def train(self, *, job, rows, config, search, runtime, progress, reporter) -> Trained:
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

    def save(self, *, model: ranking.RankModel, directory: Path, extra_manifest: dict[str, Any]) -> dict:
        def write(folder: Path) -> dict:
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

    def load(self, *, directory: Path, name: str, runtime, quantized: bool) -> ranking.RankModel:
        return ranking.load(directory)

    def score(self, *, model: ranking.RankModel, rows) -> tuple[float, str]:
        return ranking.evaluate(model=model, held_out=_held_out(rows))["ndcg@10"], "NDCG@10"

    def run(self, *, model: ranking.RankModel, texts: list[str]):
        scores = model.scores({item: 1.0 for item in texts})
        return [model.items[i] for i in scores.argsort()[::-1][:10]]
