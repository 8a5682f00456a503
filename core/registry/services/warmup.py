"""Loading models before anyone waits for them: active versions are loaded into this process's caches
(the one model cache, ``serving.model_cache``) ahead of the first request, not on it.

- At promotion: once a promotion, a forced promotion or a rollback commits, the process that made it loads
  the newly active version, in a background thread (the promoting request or job does not wait).
- At process start: web processes (``core.asgi``) and Celery worker processes (``core.celery``) start one
  warm-up thread that loads the ``ML_WARMUP_VERSIONS`` most recently activated versions of all
  organisations (and the base encoder, which knowledge-base searches use before an organisation has its
  own retrieval model), then looks again every ``ML_WARMUP_INTERVAL_S`` seconds for versions activated
  since its last look: a version promoted in another process (a train worker) is loaded in every web
  process within that interval. One cheap query per interval; each version is loaded once per process
  (the periodic look never reloads what traffic evicted, so it cannot thrash the LRU). After the versions,
  a web process runs each product's own warm-up (``Product.warmup``), for what its serving loads outside the
  registry (the support chatbot's answer generator).
``ML_WARMUP`` turns all of it off (the test suite does; a test turns it on to check it).
"""

import importlib
import logging
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from core.heap import heap_settle
from core.products import products
from core.registry.models import ModelVersion, VersionStatus
from core.registry.services.embedding import base_embedder
from core.registry.services.serving import loaded_bf16, model_is_loaded, serves_bf16, version_run

log = logging.getLogger(__name__)

WARM_TEXT = "warm-up"
# A look at "versions activated since the last look" starts this much earlier: a promotion committing
# while the previous look ran is not missed (a version seen twice is skipped, it is already loaded).
LOOK_BACK = timedelta(seconds=30)


def version_is_warm(*, version: ModelVersion) -> bool:
    """Whether this process has the version loaded (by cache state; nothing is loaded)."""
    return model_is_loaded(version=version)


def version_warm(*, version: ModelVersion, batch: bool = False) -> None:
    """Load a version into this process's cache and run one text through it as online requests do (first
    calls are slow too); ``batch``: also its bf16 copy where batch work runs that here (``serves_bf16``)."""
    version_run(version=version, texts=[WARM_TEXT])
    if batch and serves_bf16(version):
        loaded_bf16(version=version).predict([WARM_TEXT])


def active_versions_warm(
    *, limit: int, activated_since: datetime | None = None, batch: bool = False
) -> list[int]:
    """Load the ``limit`` most recently activated versions of all organisations (only those activated since
    ``activated_since`` when given) that this process has not loaded; returns the ids loaded. A version
    that fails to load is logged and skipped: its first request will report the error."""
    versions = ModelVersion.all_tenants.filter(status=VersionStatus.ACTIVE).exclude(artifact_path="")
    if activated_since is not None:
        versions = versions.filter(updated_at__gte=activated_since)
    loaded: list[int] = []
    for version in versions.order_by("-updated_at")[: max(0, limit)]:
        if version_is_warm(version=version):
            continue
        try:
            version_warm(version=version, batch=batch)
        except Exception:  # noqa: BLE001 - one broken version must not keep the others cold
            log.warning("could not warm model version %s", version.pk, exc_info=True)
            continue
        loaded.append(version.pk)
    return loaded


# --- at promotion ---------------------------------------------------------------------------------

_threads: list[threading.Thread] = []
_threads_lock = threading.Lock()


def _in_background(target, *args) -> threading.Thread:
    def run() -> None:
        try:
            target(*args)
        finally:
            connections.close_all()  # this thread's own database connection

    # Not a daemon: a process that promotes and then exits (``manage.py seed_demo``, ``train``) waits for the
    # load to end; a daemon thread still inside torch when the interpreter finalises aborts the process
    # ("terminate called without an active exception"), which stopped ``make run`` after its seed step.
    thread = threading.Thread(target=run, name="trellis-warmup", daemon=False)
    with _threads_lock:
        _threads[:] = [t for t in _threads if t.is_alive()]
        _threads.append(thread)
    thread.start()
    return thread


def warmups_wait(timeout: float | None = None) -> bool:
    """Wait for this process's warm-ups of promotions, and the first pass of its start-up thread, to end;
    True if they all did within ``timeout``."""
    deadline = None if timeout is None else time.monotonic() + timeout

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    with _threads_lock:
        threads = list(_threads)
    for thread in threads:
        thread.join(left())
    started = _looper is not None
    if started:
        _first_pass.wait(left())
    return not any(t.is_alive() for t in threads) and (not started or _first_pass.is_set())


def _warm_by_id(version_id: int) -> None:
    version = ModelVersion.all_tenants.filter(pk=version_id, status=VersionStatus.ACTIVE).first()
    if version is None:  # superseded (or rolled back) before its turn
        return
    try:
        version_warm(version=version)
    except Exception:  # noqa: BLE001 - the version still serves; its first request loads it
        log.warning("could not warm model version %s", version_id, exc_info=True)


def version_warm_on_commit(*, version_id: int) -> None:
    """Called inside the transaction that activates a version: load it here once that commits."""
    if settings.ML_WARMUP:
        transaction.on_commit(lambda: _in_background(_warm_by_id, version_id))


# --- at process start -----------------------------------------------------------------------------

_looper: threading.Thread | None = None
_first_pass = threading.Event()
_stop = threading.Event()
_start_lock = threading.Lock()


def _warm_base_embedder() -> None:
    try:
        base_embedder().embed([WARM_TEXT])
    except Exception:  # noqa: BLE001
        log.warning("could not warm the base encoder", exc_info=True)


def _warm_products() -> None:
    """Each product's own warm-up (``Product.warmup``: a model its serving loads outside the registry)."""
    for product in products():
        if product.warmup is None:
            continue
        try:
            product.warmup()
        except Exception:  # noqa: BLE001 - a product's warm-up never stops the others or the process
            log.warning("the %s warm-up failed", product.name, exc_info=True)


def _warm_loop(
    limit: int,
    interval_s: float,
    first_pass: threading.Event,
    stop: threading.Event,
    with_products: bool,
    batch: bool,
) -> None:
    look = timezone.now()
    try:
        loaded = active_versions_warm(limit=limit, batch=batch)
        _warm_base_embedder()
        log.info("warmed %d active model versions at start-up", len(loaded))
    except Exception:  # noqa: BLE001 - e.g. the database is not migrated yet
        log.warning("start-up warm-up failed", exc_info=True)
    try:
        if with_products:
            _warm_products()
    finally:
        connections.close_all()
        heap_settle()  # the loaded models join start-up's objects out of the collector's full passes
        first_pass.set()
    while interval_s > 0 and not stop.wait(interval_s):
        since, look = look - LOOK_BACK, timezone.now()
        try:
            active_versions_warm(limit=limit, activated_since=since, batch=batch)
        except Exception:  # noqa: BLE001 - try again next time
            log.warning("warm-up pass failed", exc_info=True)
        finally:
            connections.close_all()


# The ML modules that import names from transformers and peft at their top. transformers resolves those
# names lazily, and two threads resolving them at once fail ("cannot import name 'PreTrainedTokenizerBase'
# from 'transformers'"): seen on `make run`, where a worker's first training job raced this warm-up thread.
# Imported here, in the starting thread, before the warm-up thread exists.
_ML_MODULES = (
    "core.ml.modeling",
    "core.ml.predictor",
    "core.ml.classifier",
    "core.ml.embedder",
    "core.ml.loop",
)


def _import_ml_modules() -> None:
    for name in _ML_MODULES:
        importlib.import_module(name)


def warmup_at_start(*, with_products: bool = True, batch: bool = False) -> threading.Thread | None:
    """This process's warm-up thread (started once; none when ``ML_WARMUP`` is off). ``with_products``: the
    products' own warm-ups too (web processes, which serve them; workers pass False). ``batch``: the
    versions' batch-work variants too (workers: the bf16 copies where ``serves_bf16``)."""
    global _looper
    if not settings.ML_WARMUP:
        return None
    with _start_lock:
        if _looper is None:
            _import_ml_modules()
            limit = min(settings.ML_WARMUP_VERSIONS, settings.ML_PREDICTOR_CACHE_SIZE)
            _looper = threading.Thread(
                target=_warm_loop,
                args=(limit, settings.ML_WARMUP_INTERVAL_S, _first_pass, _stop, with_products, batch),
                name="trellis-warmup-loop",
                daemon=True,
            )
            _looper.start()
    return _looper


def warmup_started() -> bool:
    """Whether this process's warm-up thread has been started (and not stopped since)."""
    return _looper is not None


def warmup_stop(timeout: float | None = None) -> None:
    """End this process's warm-up thread (its periodic looks) and let a later ``warmup_at_start`` begin
    again, as in a new process."""
    global _looper, _first_pass, _stop
    with _start_lock:
        looper, stop = _looper, _stop
        _looper, _first_pass, _stop = None, threading.Event(), threading.Event()
    stop.set()
    if looper is not None:
        looper.join(timeout)
