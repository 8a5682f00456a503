"""The recommender's serving reads below Django (``core.api.fast_routes``, ``Product.fast_routes``): an
ordinary API-key call gets the full stack's answer, status and error body without a Django request; everything
else is Django's; each served call is metered (API call and recommendation) once."""

import pytest
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler

from core.api.fast_routes import FastRouteMiddleware
from core.billing import deferred, flusher
from core.billing import services as billing
from core.billing.models import Plan, PlanLimit, UsageEvent
from tests.asgi_client import asgi_call
from tests.recommender.conftest import train_now
from tests.redis_commands import redis_commands

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the fast path's threads read committed rows
    pytest.mark.skipif(not settings.REDIS_URL, reason="served below Django only with Redis (REDIS_URL)"),
]

DJANGO = get_asgi_application()
FAST = FastRouteMiddleware(DJANGO)


def _call(app, path: str, query: str = "", headers: tuple[tuple[bytes, bytes], ...] = ()):
    return asgi_call(app, path, query, headers)


def _bearer(secret: str) -> tuple[tuple[bytes, bytes], ...]:
    return ((b"authorization", f"Bearer {secret}".encode()),)


CALLS = [
    ("/api/recommender/recommendations", "user=u0&k=5"),
    ("/api/recommender/recommendations", "user=u3&k=3&category=plates&max_per_category=1&exclude=C"),
    ("/api/recommender/recommendations", "items=A&k=3&session=s1"),
    ("/api/recommender/recommendations", "user=u0&k=2&min_price=10&max_price=20&exclude_purchased=false"),
    ("/api/recommender/items/A/similar", "k=3"),
    # refusals: the same status and error body
    ("/api/recommender/recommendations", "user=u0&k=0"),
    ("/api/recommender/recommendations", "user=u0&items=A"),
    ("/api/recommender/recommendations", "user=u0&k=%C2%B2"),
    ("/api/recommender/recommendations", "user=u0&min_price=nan"),
    ("/api/recommender/items/nope/similar", ""),
]


def test_ordinary_calls_are_answered_below_django_as_django_answers_them(shop, make_key):
    org, _ = shop
    train_now(org)
    _, secret = make_key(org, scopes=("predict",))
    for path, query in CALLS:
        fast = _call(FAST, path, query, _bearer(secret))
        full = _call(DJANGO, path, query, _bearer(secret))
        assert fast[3] is False and full[3] is True, (path, query)  # no Django request on the fast path
        assert (fast[0], fast[2]) == (full[0], full[2]), (path, query)
        assert fast[1][b"content-type"] == b"application/json"
        assert fast[1][b"x-content-type-options"] == b"nosniff"
    # every answered call metered once per path it took: API calls and served recommendations
    flusher.ledger_drain()
    calls = UsageEvent.objects.for_org(org).filter(meter="api_calls")
    served = UsageEvent.objects.for_org(org).filter(meter="recommendations_served")
    assert calls.count() == 2 * 5 and sum(e.quantity for e in served) == 2 * 5
    assert {e.metadata["path"] for e in calls} == {p for p, _ in CALLS[:5]}


def test_everything_else_is_djangos(shop, make_key):
    org, _ = shop
    _, reader = make_key(org, scopes=("read",))
    _, predictor = make_key(org, scopes=("predict",))
    path = "/api/recommender/recommendations"
    nobody = _call(FAST, path, "user=u0")
    assert nobody[0] == 401 and nobody[3] is True
    wrong = _call(FAST, path, "user=u0", _bearer(reader))
    assert wrong[0] == 403 and "predict" in wrong[2]["error"]["message"] and wrong[3] is True
    bad = _call(FAST, path, "user=%00", _bearer(predictor))
    assert bad[0] == 400 and bad[3] is True
    keyed = _call(FAST, path, "user=u0", (*_bearer(predictor), (b"idempotency-key", b"abc")))
    assert keyed[3] is True
    assert _call(FAST, "/api/recommender/items/", "", _bearer(predictor))[3] is True  # not a fast route


def test_rate_limit_and_quotas_are_the_full_stacks(shop, make_key):
    org, _ = shop
    trial = Plan.objects.get(code="trial")
    Plan.objects.filter(pk=trial.pk).update(requests_per_minute=3)
    PlanLimit.objects.update_or_create(plan=trial, meter_id="recommendations_served", defaults={"limit": 1})
    _, secret = make_key(org, scopes=("predict",))
    path = "/api/recommender/recommendations"
    assert _call(FAST, path, "user=u0", _bearer(secret))[0] == 200
    over = _call(FAST, path, "user=u0", _bearer(secret))
    assert over[0] == 402 and over[2]["error"]["details"]["meter"] == "recommendations_served" and not over[3]
    _call(FAST, path, "user=u0", _bearer(secret))
    limited = _call(FAST, path, "user=u0", _bearer(secret))
    assert limited[0] == 429 and limited[2]["error"]["code"] == "rate_limited" and not limited[3]
    assert int(limited[1][b"retry-after"]) >= 1
    flusher.ledger_drain()
    assert UsageEvent.objects.for_org(org).filter(meter="api_calls").count() == 1  # refusals are not charged


def test_what_django_answers_before_the_view_is_djangos(shop, make_key):
    """The middleware in front of the view (the API's request checks, security, common, the body limit) and
    DRF's content negotiation refuse these: the fast path leaves them to Django and charges nothing."""
    org, _ = shop
    _, secret = make_key(org, scopes=("predict",))
    key = _bearer(secret)
    path = "/api/recommender/recommendations"
    cases = [
        (path, "user=u0&" + "&".join(f"x{i}=" for i in range(1000)), key, 400),  # over 1,000 fields
        (path, "user=u0&format=api", key, 404),  # DRF's format override, no such renderer
        (path, "user=u0", (*key, (b"accept", b"text/html")), 406),
        (path, "user=u0", (*key, (b"accept", b"")), 406),
        (path, "user=u0", (*key, (b"host", b"evil.example")), 400),  # ALLOWED_HOSTS
        (path, "user=u0", (*key, (b"content-length", b"x")), 400),  # the body limit's check
        ("/api/recommender/items/A\x00B/similar", "", key, 404),  # no endpoint is named with a NUL
        # a repeated header is one value joined with commas, as Django reads it: no key
        (path, "user=u0", ((b"authorization", b"Bearer nope"), *key), 401),
        (path, "user=u0", ((b"x-api-key", b"nope"), (b"x-api-key", secret.encode())), 401),
    ]
    for path, query, headers, status in cases:
        fast = _call(FAST, path, query, headers)
        full = _call(DJANGO, path, query, headers)
        assert fast[3] is True, (path, query[:40], headers[-1])
        assert (fast[0], fast[2]) == (full[0], full[2]) and fast[0] == status, (path, query[:40], headers[-1])
    served = _call(FAST, path, "user=u0&format=json", (*key, (b"accept", b"application/json; q=0.9")))
    assert served[:1] + served[3:] == (200, False)
    flusher.ledger_drain()  # the one served call's two lines; the refusals none
    assert sorted(UsageEvent.objects.for_org(org).values_list("meter", flat=True)) == [
        "api_calls",
        "recommendations_served",
    ]


def test_https_redirect_and_hsts_are_the_security_middlewares(shop, make_key, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    django = ASGIHandler()  # its SecurityMiddleware reads these settings when it is made
    fast_app = FastRouteMiddleware(django)
    org, _ = shop
    _, secret = make_key(org, scopes=("predict",))
    path, key = "/api/recommender/recommendations", _bearer(secret)
    plain = _call(fast_app, path, "user=u0", key)
    assert plain[0] == 301 and plain[1][b"Location"].startswith(b"https://") and plain[3] is True
    https = (*key, (b"x-forwarded-proto", b"https"))
    fast, full = _call(fast_app, path, "user=u0", https), _call(django, path, "user=u0", https)
    assert (fast[0], fast[3]) == (200, False)
    assert fast[1][b"strict-transport-security"] == full[1][b"Strict-Transport-Security"]
    assert full[1][b"Strict-Transport-Security"] == b"max-age=3600; includeSubDomains"


def test_the_products_routes_run_in_their_own_small_pool(shop, make_key, monkeypatch):
    """A product's route below Django runs on the routes' pool (``API_FAST_ROUTES_THREADS``, one thread per
    process by default), not the predict path's larger one, whose extra threads only queued for the GIL."""
    import threading

    from core.api import fast_asgi
    from recommender.services import serving

    org, _ = shop
    train_now(org)
    _, secret = make_key(org, scopes=("predict",))
    threads: list[str] = []
    original = serving.recommendations_for_user

    def recording(**kwargs):
        threads.append(threading.current_thread().name)
        return original(**kwargs)

    monkeypatch.setattr(serving, "recommendations_for_user", recording)
    status, _headers, _body, through_django = _call(
        FAST, "/api/recommender/recommendations", "user=u0&k=3", _bearer(secret)
    )
    assert status == 200 and through_django is False
    assert len(threads) == 1 and threads[0].startswith("fast-routes")
    assert fast_asgi._routes_pool._max_workers == settings.API_FAST_ROUTES_THREADS == 1


def test_an_organisations_first_call_builds_its_snapshot_on_the_cold_pool_while_warm_calls_go_on(
    shop, make_org, make_key, monkeypatch
):
    """The routes' pool has one thread: an organisation's first call in the process, which builds its
    catalogue snapshot (seconds on a big catalogue), runs on the cold pool, so a warm organisation's call is
    answered meanwhile, on the routes' thread; once built, its calls are warm too. Each call metered once."""
    import threading

    from recommender.services import catalogue, serving, snapshot
    from tests.recommender.conftest import ITEMS

    warm, _ = shop
    train_now(warm)
    _, warm_secret = make_key(warm, scopes=("predict",))
    cold, _ = make_org()
    catalogue.items_upsert(organisation=cold, rows=ITEMS)
    _, cold_secret = make_key(cold, scopes=("predict",))
    threads: list[tuple[int, str]] = []
    original = serving.recommendations_for_user

    def recording(**kwargs):
        threads.append((kwargs["organisation"].pk, threading.current_thread().name))
        return original(**kwargs)

    monkeypatch.setattr(serving, "recommendations_for_user", recording)
    path = "/api/recommender/recommendations"
    first = _call(FAST, path, "user=u0&k=3", _bearer(warm_secret))  # builds the warm shop's snapshot
    assert first[0] == 200 and first[3] is False
    assert threads[-1][0] == warm.pk and threads[-1][1].startswith("fast-routes-cold")
    assert snapshot.snapshot_cached(warm) and not snapshot.snapshot_cached(cold)

    building, release = threading.Event(), threading.Event()
    build = snapshot._build

    def slow_build(organisation, version):
        if organisation.pk == cold.pk:
            building.set()
            assert release.wait(30), "the test never released the build"
        return build(organisation, version)

    monkeypatch.setattr(snapshot, "_build", slow_build)
    cold_answer: list = []
    caller = threading.Thread(
        target=lambda: cold_answer.append(_call(FAST, path, "user=u0&k=3", _bearer(cold_secret)))
    )
    caller.start()
    try:
        assert building.wait(30)
        answered = _call(FAST, path, "user=u1&k=3", _bearer(warm_secret))  # while the cold one builds
        assert answered[0] == 200 and answered[3] is False
        assert threads[-1] == (warm.pk, "fast-routes_0") and caller.is_alive()
    finally:
        release.set()
        caller.join(30)
    assert cold_answer[0][0] == 200 and cold_answer[0][3] is False
    cold_threads = [name for pk, name in threads if pk == cold.pk]
    assert len(cold_threads) == 1 and cold_threads[0].startswith("fast-routes-cold")
    again = _call(FAST, path, "user=u0&k=3", _bearer(cold_secret))
    assert again[0] == 200 and threads[-1] == (cold.pk, "fast-routes_0")
    flusher.ledger_drain()
    for organisation, calls in ((warm, 2), (cold, 2)):
        served = UsageEvent.objects.for_org(organisation).filter(meter="recommendations_served")
        assert sum(e.quantity for e in served) == calls
        assert UsageEvent.objects.for_org(organisation).filter(meter="api_calls").count() == calls


def test_the_api_calls_quota_is_reserved_with_the_rate_limit_and_given_back_when_refused(shop, make_key):
    """The call is reserved on the api_calls counter in the admitting script: a refused call (400) gives it
    back, an answered one keeps it, and past the quota the 402 is the full stack's."""
    org, _ = shop
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id="api_calls", defaults={"limit": 3})
    _, secret = make_key(org, scopes=("predict",))
    path = "/api/recommender/recommendations"
    period = billing.period_bounds()[2]
    for _ in range(4):
        refused = _call(FAST, path, "user=u0&k=0", _bearer(secret))
        assert refused[0] == 400 and refused[3] is False
    assert deferred.used(organisation=org, meter="api_calls", period=period) == 0  # each given back
    for _ in range(3):
        assert _call(FAST, path, "user=u0&k=2", _bearer(secret))[0] == 200
    assert deferred.used(organisation=org, meter="api_calls", period=period) == 3
    over = _call(FAST, path, "user=u0&k=2", _bearer(secret))
    flusher.ledger_drain()  # the full stack reads the database's counter
    full = _call(DJANGO, path, "user=u0&k=2", _bearer(secret))
    assert over[0] == full[0] == 402 and over[3] is False
    assert over[2] == full[2] and over[2]["error"]["details"]["meter"] == "api_calls"
    assert deferred.used(organisation=org, meter="api_calls", period=period) == 3  # nothing more reserved
    assert UsageEvent.objects.for_org(org).filter(meter="api_calls").count() == 3


def test_the_recommendation_meter_is_reserved_with_the_call_and_settled_with_its_line(shop, make_key):
    """``FastRoute.meter``: the served recommendation is reserved in the admitting script and its ledger line
    goes with the call's in the settling one: two Redis scripts a request and no other write (four before:
    admit, reserve, settle, append), one ledger entry whose two lines the flusher writes once each."""
    import threading

    org, _ = shop
    train_now(org)
    _, secret = make_key(org, scopes=("predict",))
    path = "/api/recommender/recommendations"
    period = billing.period_bounds()[2]
    assert _call(FAST, path, "user=u0&k=2", _bearer(secret))[0] == 200  # warm: models, tokens, counters
    flusher.ledger_drain()

    def in_a_call() -> bool:  # the calls' commands, not the flusher's
        return threading.current_thread().name.startswith("fast-routes")

    with redis_commands(in_a_call) as commands:
        for _ in range(3):
            assert _call(FAST, path, "user=u0&k=2", _bearer(secret))[0] == 200
    writes = [c for c in commands if c not in ("MGET", "GET")]  # the generation tokens' read
    assert writes == ["EVALSHA", "EVALSHA"] * 3, commands
    flusher.ledger_drain()
    events = UsageEvent.objects.for_org(org).order_by("pk")
    served = [e for e in events if e.meter == "recommendations_served"]
    calls = [e for e in events if e.meter == "api_calls"]
    assert len(served) == len(calls) == 4 and all(e.quantity == 1 for e in served)
    # the last three calls' two lines came as one entry: the same request's idempotency keys
    assert {e.idempotency_key.rsplit(":", 1)[0] for e in served[1:]} == {
        e.idempotency_key.rsplit(":", 1)[0] for e in calls[1:]
    }
    assert deferred.used(organisation=org, meter="recommendations_served", period=period) == 4
    assert deferred.used(organisation=org, meter="api_calls", period=period) == 4


def test_past_the_recommendation_quota_the_input_is_checked_first_as_through_django(shop, make_key):
    """The product meter refused in the admitting script: the call goes on without it, so a bad request
    still gets its 400 and a good one the full stack's 402 for the meter; neither is charged."""
    org, _ = shop
    train_now(org)
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id="recommendations_served", defaults={"limit": 1})
    _, secret = make_key(org, scopes=("predict",))
    path = "/api/recommender/recommendations"
    period = billing.period_bounds()[2]
    assert _call(FAST, path, "user=u0&k=2", _bearer(secret))[0] == 200
    bad = _call(FAST, path, "user=u0&k=0", _bearer(secret))
    over = _call(FAST, path, "user=u0&k=2", _bearer(secret))
    flusher.ledger_drain()  # the full stack reads the database's counters
    full_bad = _call(DJANGO, path, "user=u0&k=0", _bearer(secret))
    full_over = _call(DJANGO, path, "user=u0&k=2", _bearer(secret))
    assert (bad[0], bad[2]) == (full_bad[0], full_bad[2]) and bad[0] == 400 and bad[3] is False
    assert (over[0], over[2]) == (full_over[0], full_over[2]) and over[0] == 402 and over[3] is False
    assert over[2]["error"]["details"]["meter"] == "recommendations_served"
    assert deferred.used(organisation=org, meter="api_calls", period=period) == 1  # both given back
    assert deferred.used(organisation=org, meter="recommendations_served", period=period) == 1
    assert UsageEvent.objects.for_org(org).filter(meter="recommendations_served").count() == 1


def test_a_call_that_fails_after_its_answer_was_metered_is_charged_as_through_django(
    shop, make_key, monkeypatch
):
    """A route that fails after its answer's meter ran: the call's reservation is given back and the meter
    charged, as the full stack charges it (its meter settles inside the answer); one that fails before the
    meter ran is charged nothing."""
    from recommender import api

    org, _ = shop
    train_now(org)
    _, secret = make_key(org, scopes=("predict",))
    path = "/api/recommender/recommendations"
    period = billing.period_bounds()[2]
    original = api.recommendations_answer
    metered = []

    def answered_then_failed(**kwargs):
        metered.append(original(**kwargs))  # the serving function metered its answer
        raise RuntimeError("failed after metering")

    monkeypatch.setattr(api, "recommendations_answer", answered_then_failed)
    failed = _call(FAST, path, "user=u0&k=2", _bearer(secret))
    full = _call(DJANGO, path, "user=u0&k=2", _bearer(secret))
    assert failed[0] == full[0] == 500 and failed[2]["error"]["code"] == "server_error" and len(metered) == 2

    def failed_first(**kwargs):
        raise RuntimeError("failed before metering")

    monkeypatch.setattr(api, "recommendations_answer", failed_first)
    assert _call(FAST, path, "user=u0&k=2", _bearer(secret))[0] == 500
    monkeypatch.undo()
    assert _call(FAST, path, "user=u0&k=2", _bearer(secret))[0] == 200
    flusher.ledger_drain()
    served = UsageEvent.objects.for_org(org).filter(meter="recommendations_served")
    # the fast path's failure and Django's each charged the meter; the early failure nothing; the last call
    assert (
        served.count() == 3
        and deferred.used(organisation=org, meter="recommendations_served", period=period) == 3
    )
    assert deferred.used(organisation=org, meter="api_calls", period=period) == 1  # the failures given back
