"""The metered predict call below Django (``core.api.fast_predict``) answers only what the full stack would
answer from the view: whatever a middleware in front of the view or DRF's parsing and negotiation answers
otherwise (Host, HTTPS redirect, Accept, a body DRF would not read as UTF-8 JSON, repeated key headers) is
Django's, and nothing is charged for it; the answers carry the security middleware's headers."""

import json

import pytest
from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.handlers.asgi import ASGIHandler

from core.api.fast_predict import FastPredictMiddleware
from core.billing import flusher
from core.billing.models import UsageEvent
from tests.asgi_client import asgi_call
from tests.core.registry.trained import train_intent_model

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the fast path's threads read committed rows
    pytest.mark.skipif(not settings.REDIS_URL, reason="served below Django only with Redis (REDIS_URL)"),
]

DJANGO = get_asgi_application()
FAST = FastPredictMiddleware(DJANGO)
BODY = json.dumps({"texts": ["my card has not arrived yet"]}).encode()


def _post(app, path: str, headers=(), body: bytes = BODY, content_type: bytes | None = b"application/json"):
    given = {name for name, _ in headers}
    defaults = []
    if content_type is not None and b"content-type" not in given:
        defaults.append((b"content-type", content_type))
    if b"content-length" not in given and b"transfer-encoding" not in given:
        defaults.append((b"content-length", str(len(body)).encode()))
    return asgi_call(app, path, "", (*headers, *defaults), method="POST", body=body)


def test_predict_below_django_answers_as_django_and_leaves_it_what_it_answers_before_the_view(
    make_org, make_key, tmp_path, settings
):
    org, _ = make_org()
    version = train_intent_model(org, tmp_path)
    _, secret = make_key(org, scopes=("predict",))
    path = f"/api/models/{version.pk}/predict"
    key = ((b"authorization", f"Bearer {secret}".encode()),)

    fast, full = _post(FAST, path, key), _post(DJANGO, path, key)
    assert (fast[0], fast[3], full[0], full[3]) == (200, False, 200, True)
    assert fast[2]["predictions"][0]["label"] == full[2]["predictions"][0]["label"]
    assert set(fast[2]) == set(full[2]) and b"x-request-id" in fast[1]
    django_headers = {name.lower(): value for name, value in full[1].items()}
    for name in (b"content-type", b"x-content-type-options", b"referrer-policy", b"x-frame-options"):
        assert fast[1][name] == django_headers[name], name

    utf16 = json.dumps({"texts": ["hi"]}).encode("utf-16")
    cases = [
        ((*key, (b"host", b"evil.example")), BODY, b"application/json", 400),  # ALLOWED_HOSTS
        ((*key, (b"accept", b"text/html")), BODY, b"application/json", 406),  # DRF's negotiation
        # a repeated header is one value joined with commas, as Django reads it: no key
        (((b"authorization", b"Bearer nope"), *key), BODY, b"application/json", 401),
        (((b"x-api-key", b"nope"), (b"x-api-key", secret.encode())), BODY, b"application/json", 401),
        # bodies DRF's JSON parser does not read as UTF-8 JSON
        (key, utf16, b"application/json", 400),
        (key, b"\xef\xbb\xbf" + BODY, b"application/json", 400),
        (key, b'{"texts": ["hi"], "x": NaN}', b"application/json", 400),
        (key, BODY, b"application/json; charset=latin-1", 200),  # DRF reads it as latin-1: its answer
        (key, BODY, b"application/jsonx", 415),
        (key, BODY, b"text/plain", 415),
    ]
    for headers, body, content_type, status in cases:
        fast = _post(FAST, path, headers, body, content_type)
        full = _post(DJANGO, path, headers, body, content_type)
        label = (headers[-1], body[:12], content_type)
        assert fast[3] is True, label  # Django answered it
        assert full[0] == status, (label, full[0], full[2])
        assert fast[0] == full[0], label
        if status != 200:
            assert fast[2] == full[2], label
    flusher.ledger_drain()  # two answered calls on each path (the ordinary one, the latin-1 one), no refusal
    calls = UsageEvent.objects.for_org(org).filter(meter="api_calls")
    assert calls.count() == 4

    # HTTPS: the security middleware's redirect and HSTS
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    django = ASGIHandler()  # its SecurityMiddleware reads these settings when it is made
    fast_app = FastPredictMiddleware(django)
    plain = _post(fast_app, path, key)
    assert plain[0] == 301 and plain[1][b"Location"].startswith(b"https://") and plain[3] is True
    https = (*key, (b"x-forwarded-proto", b"https"))
    fast, full = _post(fast_app, path, https), _post(django, path, https)
    assert (fast[0], fast[3], full[0]) == (200, False, 200)
    assert fast[1][b"strict-transport-security"] == full[1][b"Strict-Transport-Security"] == b"max-age=3600"


def test_an_expired_version_is_read_again_by_one_thread_while_the_others_serve_it(
    make_org, tmp_path, monkeypatch
):
    """At most one lookup per version per TTL in a process: when the entry expires under load, one serving
    thread reads it again and the others go on with the entry, instead of all of them querying at once."""
    import threading
    import time

    from django.db import connection

    from core.api import fast_predict

    org, _ = make_org()
    version = train_intent_model(org, tmp_path)
    fast_predict._versions.clear()
    assert fast_predict._cached_version(org, version.pk).pk == version.pk
    real, calls = fast_predict.registry.classifier_version, []
    reading, release = threading.Event(), threading.Event()

    def slow_lookup(**kwargs):  # the real lookup, held until the other threads have been served
        calls.append(kwargs["version_id"])
        reading.set()
        release.wait(30)
        return real(**kwargs)

    monkeypatch.setattr(fast_predict.registry, "classifier_version", slow_lookup)
    entry = (org.pk, version.pk)
    fast_predict._versions[entry] = (0.0, fast_predict._versions[entry][1])  # expired
    refreshed = []

    def refresh() -> None:
        try:
            refreshed.append(fast_predict._cached_version(org, version.pk))
        finally:
            connection.close()

    refresher = threading.Thread(target=refresh)
    refresher.start()
    try:
        assert reading.wait(30)
        served = [fast_predict._cached_version(org, version.pk) for _ in range(5)]  # meanwhile
    finally:
        release.set()
        refresher.join(30)
    assert [v.pk for v in served] == [version.pk] * 5 and calls == [version.pk]
    assert refreshed[0].pk == version.pk and fast_predict._versions[entry][0] > time.monotonic()
