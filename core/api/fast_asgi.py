"""What the two layers below Django (``core.api.fast_predict``, ``core.api.fast_routes``) share: reading a
request as Django reads it, leaving to Django what its middleware answers before the view, the headers its
middleware adds to every answer, and one pool of serving threads.

A fast layer answers a call only when the full stack would reach the view with the same request; whatever a
middleware in front of the view (security, common, the API's request checks, the body limit) or DRF's
negotiation would answer otherwise is handed to Django untouched, so that those answers have one
implementation. When in doubt, Django answers.
"""

import json
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host

# One pool for both layers: a request holds a thread through its Redis calls as well as its work, and the
# event loop's default pool (CPU count + 4 threads) would leave fewer requests in the micro-batcher than
# clients.
_pool = ThreadPoolExecutor(max_workers=settings.API_FAST_PREDICT_THREADS, thread_name_prefix="fast-api")
# The products' own routes (core.api.fast_routes) have a smaller pool of their own: no micro-batcher gathers
# their requests, which are CPU work between short Redis and database calls, and each thread past a couple per
# process waits for the GIL after every one of those calls (a recommendation with 8 clients on two processes:
# p99 47-53 ms with 32 threads, 38-44 ms with 2, the same rate; on a later machine 63-97 ms with 2, 32-40 ms
# with 1, the default; BENCHMARKS.md section 15).
_routes_pool = ThreadPoolExecutor(
    max_workers=settings.API_FAST_ROUTES_THREADS, thread_name_prefix="fast-routes"
)
# Calls their route says are not ready (``FastRoute.ready``: a cache to build first) run here, so the one or
# two threads above keep answering the calls that are.
_cold_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fast-routes-cold")


def in_pool(function: Callable[..., Any], *, routes: bool = False, cold: bool = False) -> Callable[..., Any]:
    """``function`` as a coroutine run in the fast layers' thread pool (``routes``: the products' routes';
    ``cold``: their calls that are not ready)."""
    executor = _cold_pool if cold else _routes_pool if routes else _pool
    return sync_to_async(function, thread_sensitive=False, executor=executor)


def request_headers(scope) -> dict[bytes, bytes]:
    """The request's headers as Django's ASGI request reads them: names with an underscore ignored (no
    ``x_api_key`` standing in for ``x-api-key``), the values of a repeated name joined with a comma."""
    joined: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or []:
        name = name.lower()
        if b"_" in name:
            continue
        joined[name] = joined[name] + b"," + value if name in joined else value
    return joined


def header_secret(headers: Mapping[bytes, bytes]) -> str | None:
    """The API key a request presents (``Authorization: Bearer`` or ``X-API-Key``), or None."""
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return headers.get(b"x-api-key", b"").decode("latin-1") or None


def _meta_header(meta_name: str) -> bytes:
    """``HTTP_X_FORWARDED_PROTO`` -> ``x-forwarded-proto``."""
    return meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1")


def is_secure(scope, headers: Mapping[bytes, bytes]) -> bool:
    """``HttpRequest.is_secure``: the proxy's header when ``SECURE_PROXY_SSL_HEADER`` names one that came."""
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = headers.get(_meta_header(name))
        if value is not None:
            return value.decode("latin-1").split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "https"


def host_allowed(headers: Mapping[bytes, bytes]) -> bool:
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


def accepts_json(headers: Mapping[bytes, bytes]) -> bool:
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


def is_plain_json_body(headers: Mapping[bytes, bytes]) -> bool:
    """The body is declared as JSON that DRF's JSON parser reads as UTF-8: ``application/json`` with no
    parameter but ``charset=utf-8`` (another charset, a look-alike type or any other parameter: DRF
    decides), and a plain ``Content-Length`` (no chunked body)."""
    if b"transfer-encoding" in headers or not headers.get(b"content-length", b"").isdigit():
        return False
    media_type, *params = headers.get(b"content-type", b"").split(b";")
    if media_type.strip() != b"application/json":
        return False
    return all(param.strip().lower() in (b"charset=utf-8", b'charset="utf-8"') for param in params)


def for_django(scope, headers: Mapping[bytes, bytes], *, body: bool = False) -> bool:
    """Whether a middleware in front of the view or DRF's negotiation would answer this request otherwise
    than the view: left to them. ``body``: the layer reads a JSON body (``is_plain_json_body``); without it
    any body goes to Django (the body limit's 400 and 413)."""
    return (
        "\x00" in scope.get("path", "")  # ApiRequestCheckMiddleware: 404 "No such endpoint."
        or b"idempotency-key" in headers
        or (
            not is_plain_json_body(headers)
            if body
            else b"content-length" in headers or b"transfer-encoding" in headers
        )
        or not accepts_json(headers)
        or not host_allowed(headers)  # CommonMiddleware's DisallowedHost (400)
        or (settings.SECURE_SSL_REDIRECT and not is_secure(scope, headers))  # SecurityMiddleware's 301
        or settings.PREPEND_WWW
        or bool(settings.DISALLOWED_USER_AGENTS)
    )


def answer_headers(scope, headers: Mapping[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to every answer, from the same settings."""
    out = [(b"content-type", b"application/json")]
    if settings.SECURE_HSTS_SECONDS and is_secure(scope, headers):
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


async def send_json(
    send,
    scope,
    headers: Mapping[bytes, bytes],
    status: int,
    payload: Any,
    extra: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]] = (),
) -> None:
    """The answer as DRF's JSON renderer writes it (UTF-8, compact, no NaN), with the middleware's headers."""
    content = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *answer_headers(scope, headers),
                (b"content-length", str(len(content)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
