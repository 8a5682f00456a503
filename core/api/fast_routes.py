"""Products' hot GET endpoints, served below Django for an ordinary API-key call (``Product.fast_routes``).

A product's read on the hot path (the recommender's top-k) spends more in Django, DRF and their middleware
than in its own work, and a sync Django view serves one request at a time per process under ASGI. An ASGI
layer in front of Django (``core.asgi``) answers the calls a product declares itself, in a pool of threads,
with the same steps and the same outcomes as the full stack, in the same order:

1. the API key from the per-process key cache (``api_key_authenticate_cached``), and the scope the route's
   permission needs (``core.api.permissions.permission_scope``);
2. the key's rate limit (the throttle's sliding window and counters, ``core.ratelimit``), the API-call
   quota and the route's product meter (``FastRoute.meter``), checked, counted and reserved in one Redis
   script that concurrent calls share (``core.billing.deferred.admit``): 429 with ``Retry-After``, or 402
   (a call its product meter refused is admitted without it, and the answer refuses it after checking its
   input, as through the full stack);
3. the subscription's own refusals (a cancelled subscription, an ended trial: ``quota_guard``): 402;
4. the route's ``answer(call)``: the product's own function (the DRF view calls the same one), whose
   ``TrellisError`` is the error body and status the API's exception handler gives;
5. the call's ``api_calls`` ledger line appended to the ledger stream when it succeeded, with the product
   meter's line and that reservation settled to what the answer charged (``core.billing.streamed.prepaid``)
   in the same script; every reservation given back when it did not succeed, except a product meter whose
   metered work had run before the failure, which is charged as through the full stack (it settles inside
   the answer there). Two Redis calls a request where admitting, reserving, settling and appending made four.

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

import logging
import math
import re
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from django.conf import settings
from django.db import close_old_connections

from core.api.errors import error_body, rate_limited_body
from core.api.fast_asgi import for_django, header_secret, in_pool, request_headers, send_json
from core.billing import deferred, flusher, streamed
from core.billing import services as billing
from core.billing.models import Meter
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


COLD = Outcome(0, {})  # ``serve``'s answer for a call whose route is not ready: serve it on the cold pool


def serve(
    route: FastRoute,
    args: tuple[str | None, ...],
    secret: str,
    query_string: bytes,
    path: str,
    cold: bool = False,
) -> Outcome | None:
    """Answer one call, or None to hand it to Django, or ``COLD`` (before anything is counted) when the route
    says its organisation is not ready and this is not the cold pool's thread (``cold``). Runs in a worker
    thread."""
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
        if not cold and route.ready is not None and not route.ready(organisation):
            return COLD
        subscription = billing.subscription_for(organisation=organisation)
        plan = subscription.plan
        period = billing.period_bounds()[2]
        calls = [(str(Meter.API_CALLS), 1.0, plan.limit_for(Meter.API_CALLS))]
        # the route's product meter is reserved in the same script (``streamed.prepaid``); when it is what the
        # script refuses, the call is admitted on its own and the answer meets that quota itself, as through
        # the full stack (its input's 400 before the meter's 402)
        meter = route.meter
        charges = calls + ([(meter, 1.0, plan.limit_for(meter))] if meter else [])
        try:  # the throttle's window and the quotas: one Redis script, shared across threads
            admission = deferred.admit(
                organisation=organisation,
                rate_key=f"api-key:{key.prefix}",
                requests_per_minute=plan.requests_per_minute,
                charges=charges,
                period=period,
            )
            # (should this reserve fail, Django answers and its throttle counts the call a second time)
            if admission.status == "quota" and admission.meter == meter:
                meter, charges = None, calls
                refused_at = deferred.reserve(
                    organisation=organisation,
                    meter=calls[0][0],
                    quantity=1.0,
                    limit=calls[0][2],
                    period=period,
                )
                if refused_at is not None:
                    admission = deferred.Admission("quota", meter=calls[0][0], used=refused_at)
                else:
                    admission = deferred.Admission("ok")
        except Exception:  # noqa: BLE001 - Redis trouble: nothing was counted; Django answers
            return None
        if admission.status == "rate_limited":
            wait = max(1, math.ceil(admission.retry_after))
            return Outcome(429, rate_limited_body(wait), ((b"retry-after", str(wait).encode()),))
        if admission.status == "quota":
            refusal = streamed.admission_refusal(admission, charges=charges, period=period)
            return Outcome(refusal.status, error_body(refusal.code, refusal.message, refusal.details))
        held: streamed.Prepaid | None = None
        try:  # the call (and the meter) reserved: given back unless it is answered
            billing.quota_guard(subscription=subscription, meter=Meter.API_CALLS, period=period)
            call = FastCall(organisation=organisation, api_key=key, params=params, args=args)
            with (
                streamed.prepaid(organisation=organisation, meter=meter, quantity=1.0)
                if meter
                else nullcontext() as held
            ):
                payload = route.answer(call)
        except TrellisError as exc:
            _unanswered(organisation, key, charges, period, held)
            return Outcome(exc.status, error_body(exc.code, exc.message, exc.details))
        except Exception:  # noqa: BLE001 - the full stack's 500, in the API's error shape
            log.exception("fast route %s failed", path)
            _unanswered(organisation, key, charges, period, held)
            return Outcome(500, error_body("server_error", "The server failed to answer this request."))
        _meter(organisation, key, path, held, period)
        return Outcome(200, payload)
    finally:
        close_old_connections()  # as Django does when a request ends: a pooled connection goes back


def _meter(organisation, key, path: str, held: "streamed.Prepaid | None", period: str) -> None:
    """An answered call's ledger line (its counter moved when it was admitted), with its product meter's
    line and that reservation settled to what the answer charged, in one Redis call. A Redis failure here is
    logged and the call still served (metering must not turn a served call into an error, as through Django):
    its lines are lost and the counters keep the reservations until they are seeded again."""
    lines = [deferred.Line(Meter.API_CALLS, 1, {"method": "GET", "path": path[:200], "status": 200})]
    _ledger(organisation, key, lines, held, period, "could not meter API call")


def _unanswered(
    organisation, key, charges: list[tuple[str, float, int]], period: str, held: "streamed.Prepaid | None"
) -> None:
    """A call refused or failed: its reservations given back, except that a product meter whose metered
    work ran (``Prepaid.amount``) is charged as the full stack charges it (its meter settles inside the
    answer; the call's ``api_calls`` is not)."""
    if held is None or not held.amount:
        _release(organisation, charges, period)
        return
    _release(organisation, [c for c in charges if c[0] != held.meter], period)
    _ledger(organisation, key, [], held, period, "could not charge a failed call's metered work")


def _ledger(
    organisation, key, lines: list[deferred.Line], held: "streamed.Prepaid | None", period: str, failure: str
) -> None:
    """``lines`` and the product meter's line (when its work charged something) as one ledger entry, with
    that meter's reservation settled to what was charged (``held``; none: the entry appended alone), in one
    Redis call; a failure is logged as ``failure`` (the counters are seeded again from the database)."""
    if held is not None and held.amount:
        lines = [*lines, deferred.Line(held.meter, held.amount, held.metadata)]
    try:
        if held is None:
            deferred.ledger_append(
                organisation=organisation,
                api_key_id=key.pk,
                request_id=deferred.new_request_id(),
                lines=lines,
            )
        else:
            entry = deferred.LedgerEntry(api_key_id=key.pk, request_id=deferred.new_request_id(), lines=lines)
            deferred.settle(
                organisation=organisation,
                meter=held.meter,
                reserved=held.quantity,
                used=held.amount,
                period=period,
                ledger=entry,
            )
        flusher.flusher_ensure()
    except Exception:  # noqa: BLE001 - metering must not turn a served call into an error (as Django's)
        log.exception(failure)


def _release(organisation, calls: list[tuple[str, float, int]], period: str) -> None:
    try:
        deferred.release(organisation=organisation, charges=calls, period=period)
    except Exception:  # noqa: BLE001 - the counter is seeded again from the database when it goes
        log.exception("could not give back an unanswered call's reservation")


_serve = in_pool(serve, routes=True)
_serve_cold = in_pool(serve, cold=True)


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
        headers = request_headers(scope)
        secret = header_secret(headers)
        if secret is None or for_django(scope, headers):
            return await self.app(scope, receive, send)
        route, match = found
        call = (route, match.groups(), secret, scope.get("query_string", b""), path)
        outcome = await _serve(*call)
        if outcome is COLD:
            outcome = await _serve_cold(*call, cold=True)
        if outcome is None:
            return await self.app(scope, receive, send)
        await send_json(send, scope, headers, outcome.status, outcome.payload, outcome.headers)
        return None
