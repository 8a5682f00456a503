"""The product's ASGI application with the garbage collector's pauses counted, for ``bench/gc_pauses.py``.

``uvicorn bench.gc_probe:application``: ``core.asgi``'s application as production serves it (``GC_FREEZE``
as set), plus ``GET /__gc``, which answers the process's collections since the last such call by generation
(count, total and longest pause in ms) and how many objects are frozen, and starts counting anew. Nothing
else differs.
"""

import gc
import json
import threading
import time

from core.asgi import application as product

_lock = threading.Lock()
_started: dict[int, float] = {}


def _zero() -> dict[int, dict[str, float]]:
    return {generation: {"count": 0, "total_ms": 0.0, "max_ms": 0.0} for generation in (0, 1, 2)}


_pauses = _zero()


def _count(phase: str, info: dict) -> None:
    thread = threading.get_ident()
    if phase == "start":
        _started[thread] = time.perf_counter()
        return
    pause = 1000 * (time.perf_counter() - _started.pop(thread, time.perf_counter()))
    with _lock:
        entry = _pauses[info["generation"]]
        entry["count"] += 1
        entry["total_ms"] += pause
        entry["max_ms"] = max(entry["max_ms"], pause)


gc.callbacks.append(_count)


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/__gc":
        global _pauses
        with _lock:
            body = json.dumps({"frozen": gc.get_freeze_count(), "pauses": _pauses}).encode()
            _pauses = _zero()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await product(scope, receive, send)
