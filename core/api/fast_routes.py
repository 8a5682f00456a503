"""Products' hot GET endpoints, served below Django for an ordinary API-key call (``Product.fast_routes``).

A product's read on the hot path (the recommender's top-k) spends more in Django, DRF and their middleware
than in its own work, and a sync Django view serves one request at a time per process under ASGI. An ASGI
layer in front of Django (``core.asgi``) answers the calls a product declares itself, in a pool of threads,
with the same steps and the same outcomes as the full stack, in the same order:

1. the API key from the per-process key cache (``api_key_authenticate_cached``), and the scope the route's
   permission needs (``core.api.permissions.permission_scope``);
2. the key's rate limit (the throttle's sliding window and counters, ``core.ratelimit``, checked and
   counted in one Redis script that concurrent calls share: ``core.billing.deferred.admit``): 429 with
   ``Retry-After``;
3. the API-call quota (``quota_check_streamed``): 402;
4. the route's ``answer(call)``: the product's own function (the DRF view calls the same one), whose
   ``TrellisError`` is the error body and status the API's exception handler gives;
5. the call's ``api_calls`` line through ``usage_record_streamed`` when it succeeded.

Anything else goes to Django untouched, which answers as it always has: no key or a key the cache refuses
(401), a key without the scope (403), ``Idempotency-Key``, a query string that is not UTF-8, holds a NUL or
more fields than ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` (400), a path with a NUL (404), a ``format`` other than
json or an ``Accept`` header without JSON (DRF's 404 and 406), a Host that ``ALLOWED_HOSTS`` refuses (400),
plain HTTP where ``SECURE_SSL_REDIRECT`` wants HTTPS (301), a request with a body (``Content-Length``,
``Transfer-Encoding``), ``PREPEND_WWW`` or ``DISALLOWED_USER_AGENTS`` set, no Redis (the embedded default)
or ``API_FAST_PREDICT=0``. Headers are read as Django reads them (a repeated header's values joined with a
comma, names with an underscore ignored), so two ``Authorization`` headers are Django's 401 here too. The
answer carries the headers Django's security middleware adds (``Strict-Transport-Security`` over HTTPS when
``SECURE_HSTS_SECONDS`` is set). Database connections are taken and given back per call as Django does per
request (``close_old_connections``), so the connection pool lends them.
"""

import json
import logging
import math
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from django.http.request import split_domain_port, validate_host

from core.api.errors import error_body, rate_limited_body
from core.api.fast_predict import header_secret
from core.billing import deferred
from core.billing import services as billing
from core.billing.models import Meter
from core.billing.streamed import quota_check_streamed, usage_record_streamed
from core.errors import TrellisError
from core.products import FastCall, FastRoute, products
from core.tenancy import services as tenancy

log = logging.getLogger(__name__)

_routes: list[tuple[re.Pattern[str], FastRoute]] | None = None
_routes_lock = threading.Lock()


def routes() -> list[tuple[re.Pattern[str], FastRoute]]:
    """Every product's fast routes as full-path patterns (``/api/<prefix>/<pattern>``), built once."""
    global _routes
    with _routes_lock:
        if _routes is None:
            _routes = [
                (re.compile(rf"^/api/{re.escape(p.url_prefix)}/(?:{route.pattern})$"), route)
                for p in products()
                for route in p.fast_routes
            ]
    return _routes


@dataclass(frozen=True)
class Outcome:
    status: int
    payload: dict[str, Any]
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _params(query_string: bytes) -> dict[str, str] | None:
    """The query string as ``QueryDict.get`` reads it (the last value of a repeated name), or None when it
    is not UTF-8, holds a NUL or too many fields (Django answers those)."""
    try:
        pairs = parse_qsl(
            query_string.decode("ascii"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS,  # past it Django's QueryDict refuses (400)
        )
    except (UnicodeDecodeError, ValueError):
        return None
    if any("\x00" in name or "\x00" in value for name, value in pairs):
        return None
    return dict(pairs)


def serve(
    route: FastRoute, args: tuple[str | None, ...], secret: str, query_string: bytes, path: str
) -> Outcome | None:
    """Answer one call, or None to hand it to Django. Runs in a worker thread."""
    from core.api.permissions import permission_scope

    params = _params(query_string)
    if params is None or params.get("format") not in (None, "", "json"):
        return None  # DRF's format override: 404 for a format it has no renderer for
    close_old_connections()  # as Django does when a request starts
    try:
        try:
            key = tenancy.api_key_authenticate_cached(secret=secret)
        except TrellisError:
            return None  # Django says why (401)
        if permission_scope(route.permission) not in key.scopes:
            return None  # Django's 403 names the scope
        organisation = key.organisation
        plan = billing.subscription_for(organisation=organisation).plan
        try:  # the throttle's sliding window (the same counters), in one Redis script shared across threads
            admission = deferred.admit(
                organisation=organisation,
                rate_key=f"api-key:{key.prefix}",
                requests_per_minute=plan.requests_per_minute,
                charges=[],
                period="",
            )
        except Exception:  # noqa: BLE001 - Redis trouble: nothing was counted; Django answers
            return None
        if admission.status == "rate_limited":
            wait = max(1, math.ceil(admission.retry_after))
            return Outcome(429, rate_limited_body(wait), ((b"retry-after", str(wait).encode()),))
        try:
            quota_check_streamed(organisation=organisation, meter=Meter.API_CALLS)
            payload = route.answer(FastCall(organisation=organisation, api_key=key, params=params, args=args))
        except TrellisError as exc:
            return Outcome(exc.status, error_body(exc.code, exc.message, exc.details))
        except Exception:  # noqa: BLE001 - the full stack's 500, in the API's error shape
            log.exception("fast route %s failed", path)
            return Outcome(500, error_body("server_error", "The server failed to answer this request."))
        try:
            usage_record_streamed(
                organisation=organisation,
                meter=Meter.API_CALLS,
                quantity=1,
                api_key=key,
                metadata={"method": "GET", "path": path[:200], "status": 200},
            )
        except Exception:  # noqa: BLE001 - metering must not turn a served call into an error (as Django's)
            log.exception("could not meter API call")
        return Outcome(200, payload)
    finally:
        close_old_connections()  # as Django does when a request ends: a pooled connection goes back


_pool = ThreadPoolExecutor(max_workers=settings.API_FAST_PREDICT_THREADS, thread_name_prefix="fast-route")
_serve = sync_to_async(serve, thread_sensitive=False, executor=_pool)


def _headers(scope) -> dict[bytes, bytes]:
    """The request's headers as Django's ASGI request reads them: names with an underscore ignored (no
    ``x_api_key`` standing in for ``x-api-key``), the values of a repeated name joined with a comma."""
    joined: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or []:
        name = name.lower()
        if b"_" in name:
            continue
        joined[name] = joined[name] + b"," + value if name in joined else value
    return joined


def _meta_header(meta_name: str) -> bytes:
    """``HTTP_X_FORWARDED_PROTO`` -> ``x-forwarded-proto``."""
    return meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1")


def _is_secure(scope, headers: Mapping[bytes, bytes]) -> bool:
    """``HttpRequest.is_secure``: the proxy's header when ``SECURE_PROXY_SSL_HEADER`` names one that came."""
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = headers.get(_meta_header(name))
        if value is not None:
            return value.decode("latin-1").split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "https"


def _host_allowed(headers: Mapping[bytes, bytes]) -> bool:
    """``HttpRequest.get_host`` would not raise ``DisallowedHost`` (no Host header at all: Django decides)."""
    host = None
    if settings.USE_X_FORWARDED_HOST:
        host = headers.get(b"x-forwarded-host")
    if host is None:
        host = headers.get(b"host")
    if host is None:
        return False
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(host.decode("latin-1"))
    return bool(domain) and validate_host(domain, allowed)


def _accepts_json(headers: Mapping[bytes, bytes]) -> bool:
    """DRF's content negotiation picks its JSON renderer: no ``Accept``, or one naming JSON or a wildcard
    plainly (anything else, an empty header included, is left to DRF: 406 when nothing matches)."""
    accept = headers.get(b"accept")
    if accept is None:
        return True
    if len(accept) > 256:
        return False
    for token in accept.split(b","):
        media_type = token.split(b";", 1)[0].strip()
        if media_type in (b"application/json", b"application/*", b"*/*"):
            return True
    return False


def _for_django(scope, headers: Mapping[bytes, bytes]) -> bool:
    """Whether a middleware in front of the view (security, common, the API's request checks, the body
    limit) or DRF's negotiation would answer this request otherwise than the view: left to them."""
    return (
        "\x00" in scope.get("path", "")  # ApiRequestCheckMiddleware: 404 "No such endpoint."
        or b"idempotency-key" in headers
        or b"content-length" in headers  # BodyLimitMiddleware's 400 and 413
        or b"transfer-encoding" in headers
        or not _accepts_json(headers)
        or not _host_allowed(headers)  # CommonMiddleware's DisallowedHost (400)
        or (settings.SECURE_SSL_REDIRECT and not _is_secure(scope, headers))  # SecurityMiddleware's 301
        or settings.PREPEND_WWW
        or bool(settings.DISALLOWED_USER_AGENTS)
    )


def _answer_headers(scope, headers: Mapping[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to every answer, from the same settings."""
    out = [(b"content-type", b"application/json")]
    if settings.SECURE_HSTS_SECONDS and _is_secure(scope, headers):
        sts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            sts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            sts += "; preload"
        out.append((b"strict-transport-security", sts.encode()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        out.append((b"x-content-type-options", b"nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        values = policy.split(",") if isinstance(policy, str) else policy
        out.append((b"referrer-policy", ",".join(v.strip() for v in values).encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        out.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    out.append((b"x-frame-options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper().encode()))
    return out


class FastRouteMiddleware:
    """ASGI: products' declared GET routes served here for an ordinary API-key call; the rest by ``app``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or not deferred.enabled():
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        found = None
        if path.startswith("/api/"):
            found = next(((route, m) for pattern, route in routes() if (m := pattern.match(path))), None)
        if found is None:
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        secret = header_secret(headers)
        if secret is None or _for_django(scope, headers):
            return await self.app(scope, receive, send)
        route, match = found
        outcome = await _serve(route, match.groups(), secret, scope.get("query_string", b""), path)
        if outcome is None:
            return await self.app(scope, receive, send)
        content = json.dumps(
            outcome.payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": outcome.status,
                "headers": [
                    *_answer_headers(scope, headers),
                    (b"content-length", str(len(content)).encode()),
                    *outcome.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": content})
        return None
