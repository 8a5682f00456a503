"""The second task: embedding models fine-tuned on (query, positive) pairs, for retrieval.

Trained by the same ``ml.train`` job when the dataset is a pairs dataset; scored on held-out pairs
(recall@k, MRR); promoted by the same rule, on MRR; served as vectors through ``model_embed``.
"""

import threading
from collections import OrderedDict
from typing import Any

from django.conf import settings

from core.errors import Conflict, InvalidInput
from core.ml.errors import MLError
from core.registry.models import ModelVersion
from core.registry.services.common import artifact_key, plaintext_model_dir, runtime

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


def is_embedding(version: ModelVersion) -> bool:
    return version.manifest.get("task") == EMBEDDING


def embed_config(config: dict[str, Any]):
    from core.ml.retrieval import EmbedConfig

    unknown = sorted(set(config) - EMBED_KEYS)
    if unknown:
        raise InvalidInput(f"Unknown training settings: {', '.join(unknown)}.", details={"field": "config"})
    try:
        cfg = EmbedConfig(**config)
        cfg.validate()
    except (TypeError, MLError) as exc:
        raise InvalidInput(str(exc), details={"field": "config"})
    return cfg


def train_embedding(*, job, dataset, rows, reporter, progress, device: str) -> dict[str, Any]:
    from core.ml.retrieval import evaluate_retrieval, save_embedder, train_embedder
    from core.registry.services.promotion import model_promote_if_better
    from core.registry.services.training import store_version

    cfg = embed_config(job.params.get("config") or {})
    model = train_embedder(
        config=cfg,
        train=rows["train"],
        validation=rows["validation"],
        runtime=runtime(),
        progress=progress,
        should_stop=reporter.cancelled,
    )
    held_out = rows["test"] or rows["validation"]
    metrics = evaluate_retrieval(embedder=model, pairs=held_out)
    reporter.progress(0.93, "Evaluated on the held-out pairs", force=True)
    mv = store_version(
        job=job,
        dataset=dataset,
        save=save_embedder,
        model=model,
        metrics=metrics,
        method=cfg.method,
        labels=[],
        device=device,
    )
    promoted, reason = model_promote_if_better(
        organisation=job.organisation, version_id=mv.pk, held_out=held_out
    )
    return {
        "model_version": mv.pk,
        "version": mv.version,
        "mrr": metrics["mrr"],
        "recall@1": metrics["recall@1"],
        "promoted": promoted,
        "promotion": reason,
    }


_lock = threading.Lock()
_cache: "OrderedDict[str, Any]" = OrderedDict()


def embedder_for(*, version: ModelVersion):
    """Loaded embedders, least recently used evicted first (one LRU per process)."""
    from core.ml.retrieval import load_embedder

    key = artifact_key(version)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    loaded = load_embedder(
        directory=plaintext_model_dir(version), runtime=runtime(threads=settings.ML_SERVE_THREADS)
    )
    with _lock:
        _cache[key] = loaded
        while len(_cache) > settings.ML_PREDICTOR_CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded


def embedder_is_loaded(*, version: ModelVersion) -> bool:
    """Whether this process has the version's embedder loaded (cache state only; loads nothing)."""
    with _lock:
        return artifact_key(version) in _cache


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
    from core.registry.services.serving import check_texts, metered_inference, servable_version

    check_texts(texts)
    version = servable_version(organisation=organisation, version_id=version_id, app=app, task=task)
    if not is_embedding(version):
        raise Conflict("This is a classification model: use /predict.")
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


_base_lock = threading.Lock()
_base: dict[str, Any] = {}


def base_embedder():
    """The base encoder as an embedder, loaded once per process (serving threads)."""
    from core.ml.retrieval import load_base_embedder

    with _base_lock:
        if "embedder" not in _base:
            _base["embedder"] = load_base_embedder(runtime=runtime(threads=settings.ML_SERVE_THREADS))
        return _base["embedder"]


def text_embedder(*, organisation, app: str, task: str) -> tuple[Any, str]:
    """The embedder an app's retrieval uses, and a reference naming it (stored beside vectors).

    The organisation's active embedding version for ``app``/``task`` when it has one (fine-tuned on its
    pairs), else the base encoder. Vectors made under another reference are stale and must be rebuilt.
    Not metered: callers meter the user-facing action (an answer, a stored document).
    """
    from core.registry.services.common import active_version

    version = active_version(organisation, app, task)
    if version is not None and is_embedding(version):
        return embedder_for(version=version), f"version:{version.pk}"
    embedder = base_embedder()
    return embedder, f"base:{embedder.identity['sha256'][:16]}"
