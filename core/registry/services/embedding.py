"""The embedding kind: models fine-tuned on (query, positive) pairs, for retrieval.

Trained by the same ``ml.train`` job when the dataset is a pairs dataset; scored on held-out pairs
(recall@k, MRR); promoted by the same rule, on MRR; served as vectors through ``model_embed``. The base
encoder serves as the embedder of an organisation that has not trained one (``text_embedder``).
"""

import functools
from pathlib import Path
from typing import Any

from django.conf import settings

from core.errors import InvalidInput
from core.ml.errors import MLError
from core.ml.retrieval import (
    EmbedConfig,
    evaluate_retrieval,
    load_base_embedder,
    load_embedder,
    save_embedder,
    train_embedder,
)
from core.ml.runtime import base_model_identity
from core.registry.kinds import Trained, kind_of
from core.registry.models import ModelVersion
from core.registry.services.common import active_version, runtime
from core.registry.services.serving import (
    check_texts,
    loaded_model,
    metered_inference,
    model_cache,
    version_for,
)

EMBED_KEYS = {
    "method",
    "epochs",
    "learning_rate",
    "batch_size",
    "lora_r",
    "lora_alpha",
    "max_length",
    "seed",
    "temperature",
    "time_budget_s",
    "patience",
}
DEFAULT_EMBED_CONFIG: dict[str, Any] = {"method": "lora"}
EMBEDDING = "embedding"


def embed_config(config: dict[str, Any]) -> EmbedConfig:
    unknown = sorted(set(config) - EMBED_KEYS)
    if unknown:
        raise InvalidInput(f"Unknown training settings: {', '.join(unknown)}.", details={"field": "config"})
    try:
        cfg = EmbedConfig(**config)
        cfg.validate()
    except (TypeError, MLError) as exc:
        raise InvalidInput(str(exc), details={"field": "config"})
    return cfg


class EmbeddingKind:
    name = EMBEDDING
    dataset_task = "pairs"
    operation = "embed"
    misuse = "This is an embedding model: it returns vectors through /embed, not labels."
    batched = False

    def check_settings(self, *, config, search, follow_up) -> dict[str, Any]:
        config = dict(DEFAULT_EMBED_CONFIG) if config is None else config
        if search is not None:
            raise InvalidInput("Hyper-parameter search is for classifiers; pairs train one embedding model.")
        for settings_ in (config, follow_up):
            if settings_ is not None:
                embed_config(settings_)
        return config

    def train(self, *, job, rows, config, search, runtime, progress, reporter) -> Trained:
        cfg = embed_config(config or {})
        model = train_embedder(
            config=cfg,
            train=rows["train"],
            validation=rows["validation"],
            runtime=runtime,
            progress=progress,
            should_stop=reporter.cancelled,
        )
        held_out = rows["test"] or rows["validation"]
        metrics = evaluate_retrieval(embedder=model, pairs=held_out)
        reporter.progress(0.93, "Evaluated on the held-out pairs", force=True)
        summary = {"mrr": metrics["mrr"], "recall@1": metrics["recall@1"]}
        return Trained(model, cfg.method, [], metrics, list(held_out), summary)

    def save(self, *, model, directory: Path, extra_manifest: dict[str, Any]) -> dict:
        return save_embedder(model=model, directory=directory, extra_manifest=extra_manifest)

    def after_store(self, *, version, held_out, reporter) -> None:
        return None

    def load(self, *, directory: Path, name: str, runtime, quantized: bool):
        return load_embedder(directory=directory, runtime=runtime)

    def score(self, *, model, rows) -> tuple[float, str]:
        return evaluate_retrieval(embedder=model, pairs=rows)["mrr"], "MRR"

    def run(self, *, model, texts: list[str]):
        return model.embed(texts)


def embedder_for(*, version: ModelVersion):
    """The version's loaded embedder (the one model cache)."""
    return loaded_model(version=version)


def model_embed(
    *,
    organisation,
    version_id: int | None,
    texts: list[str],
    app: str = "",
    task: str = "",
    api_key=None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Unit-length vectors for ``texts`` from an embedding version, metered per text like predictions."""
    check_texts(texts)
    version = version_for(
        organisation=organisation, operation="embed", version_id=version_id, app=app, task=task
    )
    vectors = metered_inference(
        organisation=organisation,
        version=version,
        texts=texts,
        run=lambda texts: embedder_for(version=version).embed(texts),  # loaded only once the quota allows
        api_key=api_key,
        idempotency_key=idempotency_key,
    )
    return {
        "model_version": version.pk,
        "version": version.version,
        "dim": int(vectors.shape[1]),
        "embeddings": vectors.round(6).tolist(),
    }


def _base_key() -> tuple[str, bool]:
    return _base_key_of(settings.ML_BASE_MODEL)


@functools.lru_cache(maxsize=8)
def _base_key_of(path: str | None) -> tuple[str, bool]:
    """The base encoder's cache key, worked out once per process and setting: its identity reads the
    package's metadata (a knowledge-base question asked for it twice)."""
    return f"base:{base_model_identity(path)['sha256'][:16]}", False


def base_embedder():
    """The base encoder as an embedder, loaded once per process (pinned in the model cache)."""
    rt = runtime(threads=settings.ML_SERVE_THREADS)
    return model_cache().fetch(_base_key(), lambda: load_base_embedder(runtime=rt), pinned=True)


def base_embedder_is_loaded() -> bool:
    return _base_key() in model_cache()


def text_embedder(*, organisation, app: str, task: str) -> tuple[Any, str]:
    """The embedder an app's retrieval uses, and a reference naming it (stored beside vectors).

    The organisation's active embedding version for ``app``/``task`` when it has one (fine-tuned on its
    pairs), else the base encoder. Vectors made under another reference are stale and must be rebuilt.
    Not metered: callers meter the user-facing action (an answer, a stored document).
    """
    version = _embedding_version(organisation, app, task)
    if version is not None:
        return embedder_for(version=version), f"version:{version.pk}"
    embedder = base_embedder()
    return embedder, _base_reference(embedder)


def text_embedder_reference(*, organisation, app: str, task: str) -> str:
    """``text_embedder``'s reference, without loading the organisation's embedding version (what a search asks
    to know which stored vectors are current)."""
    version = _embedding_version(organisation, app, task)
    return f"version:{version.pk}" if version is not None else _base_reference(base_embedder())


def _embedding_version(organisation, app: str, task: str):
    """The organisation's active version for ``app``/``task`` when its kind embeds, else None."""
    version = active_version(organisation, app, task)
    return version if version is not None and kind_of(version).operation == "embed" else None


def _base_reference(embedder) -> str:
    return f"base:{embedder.identity['sha256'][:16]}"
