"""The peer for bench/recommender_serving.py's HTTP rows: the organisation's active recommender version behind
a bare ASGI endpoint, no Django request stack, no key, no database, no filters, no metering.

``uvicorn bench.bare_recommend:application`` with ``BARE_ORGANISATION_ID`` (and the run's database settings)
set: the active version is loaded on the first request, and every user's history (item weights) is read
then too; a GET with ``?user=<id>`` is answered with the model's top 10 for that history (scores and an
argpartition, in a worker thread) in a JSON body about the size of the product's answer. numpy's BLAS runs
on ``ML_SERVE_THREADS`` as in the product's web process (it spun a thread per core here before: 16.4 ms of CPU
a request, BENCHMARKS.md section 15).
"""

import json
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

import django
import numpy as np
from asgiref.sync import sync_to_async

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django.setup()

from core.registry.services.common import active_version  # noqa: E402
from core.registry.services.serving import loaded_model, serving_threads_apply  # noqa: E402
from core.tenancy.models import Organisation  # noqa: E402
from recommender.models import Event  # noqa: E402

serving_threads_apply()  # numpy's BLAS on ML_SERVE_THREADS, as core.asgi sets the product's web process

_state: dict = {}


def _load() -> dict:
    """The version, its model and every user's history, read once (in a worker thread: uvicorn's worker
    processes import this module inside their event loop, where Django refuses the ORM)."""
    if not _state:
        org = Organisation.objects.get(pk=int(os.environ["BARE_ORGANISATION_ID"]))
        version = active_version(org, "recommender", "ranking")
        history: dict[str, dict[str, float]] = defaultdict(dict)
        for user, item in Event.objects.for_org(org).values_list("user", "item__external_id"):
            history[user][item] = history[user].get(item, 0.0) + 5.0
        _state.update(version=version, model=loaded_model(version=version), history=history)
    return _state


def _top(user: str) -> dict:
    state = _load()
    model = state["model"]
    scores = model.scores(state["history"].get(user, {}))
    top = np.argpartition(-scores, 10)[:10]
    top = top[np.argsort(-scores[top])]
    return {
        "model_version": state["version"].pk,
        "items": [{"id": model.items[i], "score": round(float(scores[i]), 6), "why": []} for i in top],
    }


_pool = ThreadPoolExecutor(max_workers=8)
_top_async = sync_to_async(_top, thread_sensitive=False, executor=_pool)


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    user = parse_qs(scope.get("query_string", b"").decode()).get("user", [""])[0]
    body = json.dumps(await _top_async(user), separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
