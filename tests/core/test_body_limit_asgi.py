"""The upload limit holds under the ASGI server too: Django's ASGI handler reads a whole body into a temporary
file before any middleware runs, so a body over the limit was received in full (and written to disk) before
``BodyLimitMiddleware`` refused it. Driven through ``core.asgi.application`` as uvicorn drives it."""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from django.test import override_settings

from core.asgi import application

LIMIT = 4096
CHUNK = b"x" * 1024


def _scope(headers: list[tuple[bytes, bytes]]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/datasets/",
        "raw_path": b"/api/datasets/",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"multipart/form-data; boundary=zz"),
            *headers,
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


def _call(scope: dict, chunks: int) -> tuple[dict, int]:
    """Answer to a body of ``chunks`` KiB sent in 1 KiB pieces, and how many pieces the application read."""
    sent: list[dict] = []
    read = 0

    async def receive():
        nonlocal read
        if read >= chunks:
            await asyncio.Event().wait()  # nothing more is sent; a reader asking again waits
        read += 1
        return {"type": "http.request", "body": CHUNK, "more_body": read < chunks}

    async def send(message):
        sent.append(message)

    async def run():
        task = asyncio.ensure_future(application(scope, receive, send))
        while not any(m["type"] == "http.response.body" for m in sent) and not task.done():
            await asyncio.sleep(0.01)
        task.cancel()

    async_to_sync(run)()
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return {"status": start["status"], "body": json.loads(body)}, read


@pytest.mark.django_db(transaction=True)
@override_settings(UPLOAD_MAX_BYTES=LIMIT)
def test_declared_length_over_the_limit_is_refused_without_reading_the_body():
    answer, read = _call(_scope([(b"content-length", str(1024 * 1024 * 1024).encode())]), chunks=64)
    assert answer["status"] == 413 and answer["body"]["error"]["code"] == "too_large"
    assert read == 0  # was: all 64 pieces, read before the middleware looked at the length


@pytest.mark.django_db(transaction=True)
@override_settings(UPLOAD_MAX_BYTES=LIMIT)
def test_chunked_body_over_the_limit_is_cut_off_at_the_limit_with_413():
    answer, read = _call(_scope([]), chunks=64)
    assert answer["status"] == 413 and answer["body"]["error"]["code"] == "too_large"
    assert read <= LIMIT // len(CHUNK) + 1  # was: every chunk, then a 400 "No file was submitted."
