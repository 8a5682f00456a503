"""Predictions: a per-process LRU of loaded versions, metered per text."""

import threading
from typing import Any

from django.conf import settings

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import Conflict, InvalidInput, NotFound
from core.ml.errors import BatcherClosed
from core.registry.models import ModelVersion
from core.registry.services.common import (
    MAX_PREDICT_TEXTS,
    SERVABLE,
    active_version,
    artifact_key,
    plaintext_model_dir,
    runtime,
)

_cache_lock = threading.Lock()
_cache = None


def _predictor_cache():
    global _cache
    from core.ml.serving import PredictorCache

    with _cache_lock:
        if _cache is None:
            _cache = PredictorCache(max_size=settings.ML_PREDICTOR_CACHE_SIZE)
    return _cache


def _cache_key(version: ModelVersion) -> dict[str, Any]:
    return {
        "version": artifact_key(version),
        "directory": plaintext_model_dir(version),
        "runtime": runtime(threads=settings.ML_SERVE_THREADS),
        "quantized": version.quantized,
    }


def predictor_for(*, version: ModelVersion):
    """The loaded predictor of a version (whole files and evaluations: they batch by themselves)."""
    return _predictor_cache().get(**_cache_key(version))


def predictor_is_loaded(*, version: ModelVersion) -> bool:
    """Whether this process has the version's predictor loaded (cache state only; loads nothing)."""
    key, loaded = _cache_key(version), _predictor_cache().keys()  # a list, least recently used first
    return (key["version"], key["quantized"]) in loaded


def online_predictor_for(*, version: ModelVersion):
    """What online requests call: the version's micro-batcher, so concurrent requests share forward passes
    (the request threads of the ASGI server block on it), or the bare predictor when batching is off.

    Float versions (GPU hosts, or versions that failed the int8 gate) batch; int8 versions run each text
    alone anyway (see ``Predictor``), so they skip the batcher and its wait.
    """
    if settings.ML_MICROBATCH_MAX <= 1 or version.quantized:
        return predictor_for(version=version)
    return _predictor_cache().batcher(
        **_cache_key(version),
        max_batch=settings.ML_MICROBATCH_MAX,
        max_wait_ms=settings.ML_MICROBATCH_WAIT_MS,
    )


def servable_version(*, organisation, version_id: int | None, app: str = "", task: str = "") -> ModelVersion:
    """The version to predict with (by id, or the active one for app/task); refuses one that cannot serve."""
    if not version_id and not (app and task):
        raise InvalidInput(
            "Name the model: a version id, or the app and task of an active model.",
            details={"fields": ["model", "app", "task"]},
        )
    qs = ModelVersion.objects.for_org(organisation)
    version = qs.filter(pk=version_id).first() if version_id else active_version(organisation, app, task)
    if version is None:
        raise NotFound("No such model version." if version_id else f"No active model for {app}/{task}.")
    if version.status not in SERVABLE:
        raise Conflict(f"This version is {version.status} and cannot serve predictions.")
    return version


def classifier_version(
    *, organisation, version_id: int | None, app: str = "", task: str = ""
) -> ModelVersion:
    from core.registry.services.embedding import is_embedding

    version = servable_version(organisation=organisation, version_id=version_id, app=app, task=task)
    if is_embedding(version):
        raise Conflict("This is an embedding model: it returns vectors through /embed, not labels.")
    return version


def check_texts(texts: list[str]) -> None:
    if not texts or len(texts) > MAX_PREDICT_TEXTS:
        raise InvalidInput(f"Send between 1 and {MAX_PREDICT_TEXTS} texts.", details={"field": "texts"})
    if any(not isinstance(t, str) or not t.strip() for t in texts):
        raise InvalidInput("Every text must be a non-empty string.", details={"field": "texts"})


def metered_inference(
    *, organisation, version: ModelVersion, texts: list[str], run, api_key, idempotency_key
):
    """``run(texts)`` under the predictions quota, then one ledger line per call (quantity: the texts)."""
    billing.quota_check(organisation=organisation, meter=Meter.PREDICTIONS, quantity=len(texts))
    result = run(texts)
    billing.usage_record(
        organisation=organisation,
        meter=Meter.PREDICTIONS,
        quantity=len(texts),
        api_key=api_key,
        idempotency_key=idempotency_key,
        enforce=False,
        metadata={"model_version": version.pk},
    )
    return result


def model_predict(
    *,
    organisation,
    version_id: int | None = None,
    app: str = "",
    task: str = "",
    texts: list[str],
    api_key=None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Predict with a version (or the active one for app/task), metered per text."""
    check_texts(texts)
    version = classifier_version(organisation=organisation, version_id=version_id, app=app, task=task)

    def run(texts: list[str]):
        try:
            return online_predictor_for(version=version).predict(texts)
        except BatcherClosed:  # the version was evicted from this process between lookup and call
            return predictor_for(version=version).predict(texts)

    predictions = metered_inference(
        organisation=organisation,
        version=version,
        texts=texts,
        run=run,
        api_key=api_key,
        idempotency_key=idempotency_key,
    )
    return {
        "model_version": version.pk,
        "version": version.version,
        "predictions": [
            {"label": p.label, "probabilities": p.probabilities, "version": version.version}
            for p in predictions
        ],
    }


def serving_path(*, version: ModelVersion) -> str:
    """Which weights answer for a version: ``"int8"`` (dynamic int8 on CPU: it passed the gate) or
    ``"float"``."""
    return "int8" if version.quantized else "float"


def model_evaluate(
    *,
    organisation,
    version_id: int | None = None,
    app: str = "",
    task: str = "",
    data: bytes,
    filename: str | None = None,
    columns: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Score a version on a labelled file with training's own evaluation (``core.ml.evaluate``), through the
    path that serves it (float or int8); metered per text like predictions. The file is read as an upload
    is (same columns, normalisation and PII scrubbing as the training rows)."""
    from core.ml.datasets import DatasetError, parse_dataset
    from core.ml.evaluate import evaluate_classifier

    version = classifier_version(organisation=organisation, version_id=version_id, app=app, task=task)
    try:
        parsed = parse_dataset(data=data, task="classification", filename=filename, columns=columns)
    except DatasetError as exc:
        raise InvalidInput(str(exc), details={"rejected": [r.__dict__ for r in exc.rejected[:20]]})
    unknown = sorted({label for _, label in parsed.rows} - set(version.labels))
    if unknown:
        raise InvalidInput(
            f"Labels not known to version {version.pk}: {', '.join(unknown[:10])}.",
            details={"field": "label", "labels": unknown[:50]},
        )
    rows = list(parsed.rows)
    metrics = metered_inference(
        organisation=organisation,
        version=version,
        texts=[text for text, _ in rows],
        run=lambda _texts: evaluate_classifier(model_or_predictor=predictor_for(version=version), rows=rows),
        api_key=None,
        idempotency_key=None,
    )
    return {
        "model_version": version.pk,
        "version": version.version,
        "app": version.app,
        "task": version.task,
        "serving": serving_path(version=version),
        "rows": len(rows),
        "rejected": len(parsed.rejected),
        "metrics": metrics.to_dict(),
    }
