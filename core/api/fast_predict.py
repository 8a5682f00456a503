"""The metered hot path: ``POST /api/models/<id>/predict`` with an API key, at the model's speed.

An ASGI layer in front of Django (``core.asgi``) answers the ordinary predict call itself: an API key with
the ``predict`` scope, a JSON body that is exactly ``{"texts": [...]}`` and valid, no ``Idempotency-Key``
and no query string, a servable classifier version, a live subscription. It reads nothing from the database
in the steady state: the key and its organisation, plan and subscription come from a per-process cache that
is refreshed every ``KEY_TTL_S`` (``core.tenancy.services.api_key_authenticate_cached``),
the model answers first, then one Redis script checks the rate limit and both quotas (API calls and
predictions), reserves them and appends the two ledger lines (the same ones the full stack writes) to the
Redis stream, all or nothing, before the answer is sent; the flusher writes them into the ledger in batches
(``core.billing.deferred``). A request the rate limit or a quota refuses costs its forward pass and nothing
else. A request the quota refuses gets the full
stack's 402. Anything else (another caller, a bad body, an unknown version, a rate-limited key, a Redis
error, ...) is handed to Django untouched, which answers exactly as it always has: the errors have one
implementation. So is whatever a middleware in front of the view or DRF's parser and negotiation would answer
otherwise (``core.api.fast_asgi.for_django``: a Host outside ``ALLOWED_HOSTS``, plain HTTP under
``SECURE_SSL_REDIRECT``, an ``Accept`` without JSON, a body that is not plainly UTF-8
``application/json`` with a ``Content-Length``); headers are read as Django reads them (a repeated
``Authorization`` is one joined value) and the answer carries the security middleware's headers from the
settings, HSTS included.
"""

import json
import re
import threading
import time
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from core.api.errors import error_body
from core.api.fast_asgi import for_django, header_secret, in_pool, request_headers, send_json
from core.billing import deferred, flusher
from core.billing import services as billing
from core.billing.meters import Meter
from core.billing.streamed import admission_refusal
from core.errors import QuotaExceeded, TrellisError
from core.ml.errors import BatcherClosed
from core.registry import services as registry
from core.tenancy import services as tenancy

PATH = re.compile(r"^/api/models/([0-9]{1,18})/predict$")
KEY_TTL_S = tenancy.KEY_CACHE_TTL_S  # how long a process may serve a revoked key, archived version, old plan
MAX_BODY = 256 * 1024

_lock = threading.Lock()
_versions: dict[tuple[int, int], tuple[float, Any]] = {}  # (organisation, version id) -> (until, version)
_refreshing: set[tuple[int, int]] = set()


def _cached_key(secret: str):
    if not tenancy.api_key_is_cached(secret=secret):
        close_old_connections()  # the lookup reads the database: on a fresh or healthy connection
    try:
        return tenancy.api_key_authenticate_cached(secret=secret)
    except TrellisError:
        return None  # the full stack says why


def _cached_version(organisation, version_id: int):
    """The servable version (at most one lookup per version per TTL in this process: while one thread reads
    it again, the others go on with the entry that just expired, as the key cache does)."""
    entry = (organisation.pk, version_id)
    hit = _versions.get(entry)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    with _lock:
        if hit is not None and entry in _refreshing:
            return hit[1]  # being read again by another thread
        _refreshing.add(entry)
    try:
        try:
            version = registry.classifier_version(organisation=organisation, version_id=version_id)
        except TrellisError:
            with _lock:
                _versions.pop(entry, None)
            return None
        with _lock:
            if len(_versions) > 10_000:
                _versions.clear()
            _versions[entry] = (time.monotonic() + KEY_TTL_S, version)
        return version
    finally:
        with _lock:
            _refreshing.discard(entry)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _texts(body: bytes) -> list[str] | None:
    try:  # as DRF's JSON parser reads it: UTF-8 only (no BOM, no UTF-16), no NaN or Infinity
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or set(data) != {"texts"}:
        return None
    texts = data["texts"]
    if not isinstance(texts, list) or not 1 <= len(texts) <= registry.MAX_PREDICT_TEXTS:
        return None
    if any(not isinstance(t, str) or not t.strip() for t in texts):
        return None
    return texts


def serve(secret: str, version_id: int, body: bytes, path: str) -> tuple[int, dict, list] | None:
    """Answer one predict call, or None to hand it to the full stack. Runs in a worker thread."""
    key = _cached_key(secret)
    if key is None or "predict" not in key.scopes:
        return None
    texts = _texts(body)
    if texts is None:
        return None
    organisation = key.organisation
    version = _cached_version(organisation, version_id)
    if version is None:
        return None
    subscription = billing.subscription_for(organisation=organisation)
    period = billing.period_bounds()[2]
    try:
        billing.quota_guard(subscription=subscription, meter=Meter.API_CALLS, period=period)
    except QuotaExceeded:
        return None
    plan = subscription.plan
    charges = [
        (str(Meter.API_CALLS), 1.0, plan.limit_for(Meter.API_CALLS)),
        (str(Meter.PREDICTIONS), float(len(texts)), plan.limit_for(Meter.PREDICTIONS)),
    ]
    try:
        try:
            predictions = registry.online_predictor_for(version=version).predict(texts)
        except BatcherClosed:  # evicted from this process between lookup and call
            predictions = registry.predictor_for(version=version).predict(texts)
    except Exception:  # noqa: BLE001 - nothing was charged: the full stack runs (and meters) it again
        return None
    request_id = deferred.new_request_id()
    ledger = deferred.LedgerEntry(
        api_key_id=key.pk,
        request_id=request_id,
        lines=[
            deferred.Line(Meter.PREDICTIONS, len(texts), {"model_version": version.pk}),
            deferred.Line(Meter.API_CALLS, 1, {"method": "POST", "path": path[:200], "status": 200}),
        ],
    )
    try:  # the rate limit, both quotas and the ledger lines in one Redis script: all or nothing
        admission = deferred.admit(
            organisation=organisation,
            rate_key=f"api-key:{key.prefix}",
            requests_per_minute=plan.requests_per_minute,
            charges=charges,
            period=period,
            ledger=ledger,
        )
    except Exception:  # noqa: BLE001 - Redis trouble: the full stack meters through the database
        return None
    if admission.status == "rate_limited":
        return None  # the full stack answers 429 with its Retry-After (and counts the hit there)
    if admission.status == "quota":
        refusal = admission_refusal(admission, charges=charges, period=period)
        return refusal.status, error_body(refusal.code, refusal.message, refusal.details), []
    flusher.flusher_ensure()
    payload = {
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
    return 200, payload, [(b"x-request-id", request_id.encode())]


_serve = in_pool(serve)


class FastPredictMiddleware:
    """ASGI: serve the ordinary metered predict call here, hand everything else to ``app``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        match = PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope["method"] != "POST" or scope.get("query_string") or not deferred.enabled():
            return await self.app(scope, receive, send)
        headers = request_headers(scope)
        secret = header_secret(headers)
        if (
            secret is None
            or for_django(scope, headers, body=True)  # a JSON body with a Content-Length, as Django would
            or int(headers[b"content-length"]) > min(MAX_BODY, settings.API_MAX_BODY_BYTES)
        ):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return None
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        outcome = await _serve(secret, int(match.group(1)), body, scope["path"])
        if outcome is None:
            return await self.app(scope, _replay(body, receive), send)
        status, payload, extra = outcome
        await send_json(send, scope, headers, status, payload, extra)
        return None


def _replay(body: bytes, receive):
    given = False

    async def replayed():
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
