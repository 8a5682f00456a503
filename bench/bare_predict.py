"""The ceiling for bench/metered_http.py: the same predictor behind a bare ASGI endpoint, no auth or metering.

``uvicorn bench.bare_predict:application`` with ``BARE_VERSION_ID`` (and the run's database settings) set:
any POST with ``{"texts": [...]}`` is answered by the version's online predictor (the micro-batcher or the
bare predictor, as ``core.registry.services.online_predictor_for`` serves it to the API) in a worker thread,
with the API's answer shape. Nothing else runs: no Django middleware, no key, no rate limit, no ledger.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import django
from asgiref.sync import sync_to_async

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django.setup()

from core.registry import services  # noqa: E402
from core.registry.models import ModelVersion  # noqa: E402

VERSION = ModelVersion.all_tenants.get(pk=int(os.environ["BARE_VERSION_ID"]))


def _predict(texts: list[str]) -> dict:
    predictions = services.online_predictor_for(version=VERSION).predict(texts)
    return {
        "model_version": VERSION.pk,
        "version": VERSION.version,
        "predictions": [
            {"label": p.label, "probabilities": p.probabilities, "version": VERSION.version}
            for p in predictions
        ],
    }


# As many threads as the hot path has (API_FAST_PREDICT_THREADS), so both feed the micro-batcher alike.
_pool = ThreadPoolExecutor(max_workers=int(os.environ.get("API_FAST_PREDICT_THREADS", "32")))
_predict_async = sync_to_async(_predict, thread_sensitive=False, executor=_pool)


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    chunks, more = [], True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    payload = await _predict_async(json.loads(b"".join(chunks))["texts"])
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
