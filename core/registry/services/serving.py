"""Serving any kind: the one per-process model cache, the version that serves, metered predictions.

A version's kind loads it (``kind.load``) into :func:`model_cache`, keyed by the artifact's hash
(``common.artifact_key``); every caller (online requests, batch jobs, evaluation, promotion, the warm-up)
gets models through :func:`loaded_model` and never branches on the kind.
"""

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings

from core.billing import services as billing
from core.billing.models import Meter
from core.errors import Conflict, InvalidInput, NotFound
from core.ml.cache import ModelCache
from core.ml.datasets import DatasetError, parse_dataset
from core.ml.errors import BatcherClosed
from core.ml.evaluate import evaluate_classifier
from core.registry.kinds import kind_of
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
_cache: ModelCache | None = None


def serving_threads_apply() -> None:
    """A serving process's torch and numpy BLAS threads set to ``ML_SERVE_THREADS`` when it starts: a model
    load sets them too (``core.ml.runtime.apply_threads``), but a web process that serves only numpy models
    (the recommender's) loads none, and its BLAS ran a thread per core whose idle spinning cost more CPU than
    the requests' own products (the bare recommendation peer: 16.4 ms of CPU a request, 3.4 with one BLAS
    thread; BENCHMARKS.md section 15)."""
    from core.ml.runtime import apply_threads

    apply_threads(runtime(threads=settings.ML_SERVE_THREADS))


def model_cache() -> ModelCache:
    """This process's cache of loaded models (all kinds; created with the first load)."""
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = ModelCache(max_size=settings.ML_PREDICTOR_CACHE_SIZE)
        return _cache


def serves_int8(version: ModelVersion) -> bool:
    """Whether ``version`` serves int8 in this process: it passed its int8 gate, and int8 pays here.

    With ``ML_INT8_KERNEL=auto`` int8 serves where torch's int8 kernel is faster than float32 on this machine
    (``core.ml.quantize.matmul_kernel``, timed once per process); where it is not (a CPU without AVX-512 VNNI
    or AMX: there int8 is at best float's product plus the rows' quantisation), the version serves its float
    model, which is faster there, is what its gate measured int8 against, and batches concurrent requests.
    ``int`` or ``float`` serves int8 on that kernel whatever the machine."""
    if not version.quantized:
        return False
    if settings.ML_INT8_KERNEL != "auto":
        return True
    from core.ml.quantize import matmul_kernel  # torch: loaded with the first int8 version

    return matmul_kernel("auto") == "int"


def serves_bf16(version: ModelVersion) -> bool:
    """Whether batch work may run ``version``'s bf16 encoder in this process (``core.ml.bf16``): it passed its
    bf16 gate (measured where training ran on a CPU with fast bf16), this process runs on CPU (not a GPU
    host), and ``ML_BF16`` allows: ``auto`` where bf16 is clearly the fastest product here (AMX; timed once
    per process), ``on`` always, ``off`` never."""
    if not (version.quantization or {}).get("use_bf16") or settings.ML_BF16 == "off":
        return False
    from core.ml.runtime import resolve_device

    if resolve_device(runtime()) != "cpu":  # a GPU host runs batch work on its GPU
        return False
    if settings.ML_BF16 == "on":
        return True
    from core.ml.bf16 import bf16_pays  # torch: loaded with the first bf16 version

    return bf16_pays()


def loaded_bf16(*, version: ModelVersion):
    """The version's predictor with its encoder in bf16 (``core.ml.predictor.bf16_copy`` of its float model),
    cached beside its other variants."""
    float_model = _loader(version, quantized=False)

    def load():
        from core.ml.predictor import bf16_copy  # torch: with the first bf16 load

        return bf16_copy(float_model())

    return model_cache().fetch((artifact_key(version), "bf16"), load)


def _key(version: ModelVersion, quantized: bool | None = None) -> tuple[str, bool]:
    return artifact_key(version), serves_int8(version) if quantized is None else quantized


def _loader(version: ModelVersion, quantized: bool | None = None):
    kind, key = kind_of(version), artifact_key(version)
    rt = runtime(threads=settings.ML_SERVE_THREADS)
    quantized = serves_int8(version) if quantized is None else quantized
    # plaintext_model_dir decrypts (encryption at rest) only when the cache misses, not on every request
    return lambda: kind.load(
        directory=plaintext_model_dir(version), name=key, runtime=rt, quantized=quantized
    )


def loaded_model(*, version: ModelVersion, quantized: bool | None = None):
    """The version's loaded model, as its kind serves it (whole files and evaluations: they batch by
    themselves); ``quantized=False`` loads the float model of a version that serves int8."""
    return model_cache().fetch(_key(version, quantized), _loader(version, quantized))


def predictor_for(*, version: ModelVersion):
    """The loaded predictor of a (classifier) version; kept name of :func:`loaded_model`."""
    return loaded_model(version=version)


def model_is_loaded(*, version: ModelVersion) -> bool:
    """Whether this process has the version loaded (cache state only; loads nothing)."""
    return _key(version) in model_cache()


predictor_is_loaded = model_is_loaded


def online_model_for(*, version: ModelVersion):
    """What online requests call: the version's micro-batcher when its kind batches, so concurrent requests
    share forward passes (the request threads of the ASGI server block on it), else the loaded model.

    Float versions (GPU hosts, or versions that failed the int8 gate) batch; int8 versions batch only texts
    of one token length (``core.ml.predictor.Predictor``), which concurrent requests seldom share, so they
    skip the batcher and its wait.
    """
    if not kind_of(version).batched or settings.ML_MICROBATCH_MAX <= 1 or serves_int8(version):
        return loaded_model(version=version)
    return model_cache().batcher(
        _key(version),
        _loader(version),
        max_batch=settings.ML_MICROBATCH_MAX,
        max_wait_ms=settings.ML_MICROBATCH_WAIT_MS,
    )


online_predictor_for = online_model_for


def _online(version: ModelVersion, call: Callable[[Any], Any]) -> Any:
    """``call`` on what online requests call for ``version`` (``online_model_for``)."""
    try:
        return call(online_model_for(version=version))
    except BatcherClosed:  # the version was evicted from this process between lookup and call
        return call(loaded_model(version=version))


def version_run(*, version: ModelVersion, texts: list[str]):
    """The version's own operation (labels or vectors) on ``texts``, as online requests get it."""
    kind = kind_of(version)
    return _online(version, lambda model: kind.run(model=model, texts=texts))


def version_embed(*, version: ModelVersion, texts: list[str]):
    """The version's encoder vectors of ``texts`` as online requests get them: a float version's pass shared
    with concurrent requests' (its micro-batcher), an int8 version's its own (``online_model_for``)."""
    return _online(version, lambda model: model.embed(texts))


def _shares_encoder(model) -> bool:
    return all(hasattr(model, name) for name in ("encoder_key", "embed", "predictions"))


def predict_shared(
    *,
    versions: Sequence[ModelVersion],
    texts: list[str],
    seconds: dict[str, float] | None = None,
    float_encoder: bool = False,
    bf16: bool = False,
    in_scope: bool = True,
) -> list[Any]:
    """Every version's answer on ``texts`` (in the order of ``versions``), one encoder pass per encoder.

    Loaded classifiers (``core.ml.predictor.Predictor``) are grouped by ``encoder_key``: a group embeds the
    texts once (its first member's encoder) and every member's head reads those embeddings. Head versions on
    the frozen base model share a pass; a fine-tuned (full or LoRA) version has an encoder of its own, and a
    version of another kind runs its own operation, so each of those makes its own pass. ``seconds``, when
    given, collects the time of the encoder passes (``"encoder"``) and of each version's head or own pass
    (by version id), so callers can report where the time went.

    An int8 version's encoder differs from the float one. ``float_encoder``
    serves every version from its float model, so head versions on the base share a pass whatever their
    int8 gates decided (float is the reference each gate measured int8 against): for batch work, where one
    float pass costs less than a float and an int8 pass. ``bf16``: the versions that may run their bf16
    encoder here (``serves_bf16``: batch work on a CPU with AMX) do, the others as ``float_encoder`` says.

    ``in_scope=False``: classifiers' predictions without their out-of-scope score (``Predictor.predictions``),
    for callers that do not read it: the score compares every text with every training row.
    """
    seconds = {} if seconds is None else seconds
    models = [
        loaded_bf16(version=v)
        if bf16 and serves_bf16(v)
        else loaded_model(version=v, quantized=False if float_encoder else None)
        for v in versions
    ]
    groups: dict[str, list[int]] = {}
    for i, model in enumerate(models):
        key = model.encoder_key if _shares_encoder(model) else f"alone:{i}"
        groups.setdefault(key, []).append(i)
    answers: list[Any] = [None] * len(versions)
    for members in groups.values():
        first = models[members[0]]
        if not _shares_encoder(first) or (len(members) == 1 and in_scope):
            for i in members:
                started = time.perf_counter()
                answers[i] = kind_of(versions[i]).run(model=models[i], texts=texts)
                _add(seconds, str(versions[i].pk), started)
            continue
        started = time.perf_counter()
        embeddings = first.embed(texts)
        _add(seconds, "encoder", started)
        for i in members:
            started = time.perf_counter()
            model = models[i]
            answers[i] = model.predictions(embeddings, texts, in_scope=in_scope)
            _add(seconds, str(versions[i].pk), started)
    return answers


def _add(seconds: dict[str, float], key: str, started: float) -> None:
    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - started


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


def version_for(
    *, organisation, operation: str, version_id: int | None, app: str = "", task: str = ""
) -> ModelVersion:
    """A servable version whose kind answers ``operation`` ("predict" or "embed"); the kind says why not."""
    version = servable_version(organisation=organisation, version_id=version_id, app=app, task=task)
    kind = kind_of(version)
    if kind.operation != operation:
        raise Conflict(kind.misuse)
    return version


def classifier_version(
    *, organisation, version_id: int | None, app: str = "", task: str = ""
) -> ModelVersion:
    """A servable version that predicts labels."""
    return version_for(
        organisation=organisation, operation="predict", version_id=version_id, app=app, task=task
    )


def check_texts(texts: list[str]) -> None:
    if not texts or len(texts) > MAX_PREDICT_TEXTS:
        raise InvalidInput(f"Send between 1 and {MAX_PREDICT_TEXTS} texts.", details={"field": "texts"})
    if any(not isinstance(t, str) or not t.strip() for t in texts):
        raise InvalidInput("Every text must be a non-empty string.", details={"field": "texts"})


def metered_inference(
    *, organisation, version: ModelVersion, texts: list[str], run, api_key, idempotency_key
):
    """``run(texts)`` under the predictions quota, then one ledger line per call (quantity: the texts)."""
    return billing.metered(
        lambda: run(texts),
        organisation=organisation,
        meter=Meter.PREDICTIONS,
        quantity=len(texts),
        api_key=api_key,
        idempotency_key=idempotency_key,
        metadata={"model_version": version.pk},
    )


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

    predictions = metered_inference(
        organisation=organisation,
        version=version,
        texts=texts,
        run=lambda texts: version_run(version=version, texts=texts),
        api_key=api_key,
        idempotency_key=idempotency_key,
    )
    return {
        "model_version": version.pk,
        "version": version.version,
        "predictions": [
            {
                "label": p.label,
                "probabilities": p.probabilities,
                "in_scope": p.in_scope,
                "version": version.version,
            }
            for p in predictions
        ],
    }


def serving_path(*, version: ModelVersion) -> str:
    """Which weights answer for a version in this process: ``"int8"`` (int8 on CPU: it passed the gate, and
    int8 pays on this machine: ``serves_int8``) or ``"float"``."""
    return "int8" if serves_int8(version) else "float"


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
