"""One body-size limit for every request, checked before anything reads or parses the body.

Uploads (any ``multipart/form-data`` body: the dataset pages and API, batch predictions, the files products
take, such as answer templates and Q&A pairs) may be up to ``UPLOAD_MAX_BYTES``; other API bodies up to
``API_MAX_BODY_BYTES``. A declared ``Content-Length`` over the limit is answered at once with 413 (the
JSON error shape under ``/api/``, a page elsewhere); a body without one (chunked) is read through a stream
that stops at the limit, so a parser never sees more than it allows.

It sits after the session, authentication and organisation middleware (none of them reads the body) so the
413 page can show who is signed in, and before any view, form or CSRF check reads ``request.POST``.
"""

import asyncio
import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.shortcuts import render

from core.api.errors import error_body, json_error


def limit_for(*, path: str, content_type: str) -> int:
    if content_type.lower().startswith("multipart/form-data"):
        return settings.UPLOAD_MAX_BYTES
    if path.startswith("/api/"):
        return settings.API_MAX_BODY_BYTES
    return settings.UPLOAD_MAX_BYTES


def body_limit(request) -> int:
    return limit_for(path=request.path, content_type=request.META.get("CONTENT_TYPE", ""))


def _size(n: int) -> str:
    return f"{n / 1_048_576:.1f} MB" if n >= 1_048_576 else f"{n} bytes"


class _CappedStream:
    """Reads at most ``limit`` bytes of a body of unknown length, then raises ``RequestDataTooBig``."""

    def __init__(self, stream, limit: int) -> None:
        self._stream, self._left = stream, limit

    def _take(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0:
            raise RequestDataTooBig("The request body is over the upload limit.")
        return data

    def read(self, size: int | None = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._take(self._stream.read(want))

    def readline(self, size: int | None = -1) -> bytes:
        want = self._left + 1 if size is None or size < 0 else min(size, self._left + 1)
        return self._take(self._stream.readline(want))

    def close(self) -> None:
        self._stream.close()


class BodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = body_limit(request)
        declared = request.META.get("CONTENT_LENGTH")
        if declared in (None, ""):
            if hasattr(request, "_stream"):
                request._stream = _CappedStream(request._stream, limit)
            return self.get_response(request)
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if length < 0:
            if request.path.startswith("/api/"):
                return json_error("invalid", "Invalid Content-Length header.", 400)
            return render(
                request,
                "web/message.html",
                {"title": "Bad request", "text": "The request has an invalid Content-Length header."},
                status=400,
            )
        if length > limit:
            return self._too_large(request, length, limit)
        return self.get_response(request)

    def _too_large(self, request, length: int, limit: int):
        if request.path.startswith("/api/"):
            return json_error(
                "too_large",
                f"The request body is {length} bytes; the limit is {limit} bytes ({_size(limit)}).",
                413,
            )
        text = (
            f"The upload is {_size(length)}; the limit is {_size(limit)}. Go back and choose a smaller file."
        )
        return render(request, "web/message.html", {"title": "File too large", "text": text}, status=413)


class BodyLimitASGIMiddleware:
    """The same limit in front of Django's ASGI handler, which reads a whole body into a temporary file
    before any Django middleware runs (so under uvicorn a 10 GB upload was received and written to disk
    before ``BodyLimitMiddleware`` could refuse it).

    A declared ``Content-Length`` over the limit: Django gets the headers and an empty body, so
    ``BodyLimitMiddleware`` answers its usual 413 and nothing of the body is read. A body without a length
    is passed on until it goes over the limit; then this answers 413 itself and tells Django the client left.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        path = scope.get("path", "")
        limit = limit_for(path=path, content_type=headers.get(b"content-type", b"").decode("latin-1"))
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > limit:
            given = False

            async def no_body():
                nonlocal given
                if given:  # Django's wait for a disconnect: it ends (cancelled) with the response
                    await asyncio.Event().wait()
                given = True
                return {"type": "http.request", "body": b"", "more_body": False}

            return await self.app(scope, no_body, send)
        if declared:
            return await self.app(scope, receive, send)
        seen = 0

        async def capped():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    await _send_too_large(send, path, limit)
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, capped, send)


async def _send_too_large(send, path: str, limit: int) -> None:
    if path.startswith("/api/"):
        body = json.dumps(
            error_body("too_large", f"The request body is over the limit of {limit} bytes ({_size(limit)}).")
        ).encode()
        content_type = b"application/json"
    else:
        text = f"The upload is over the limit of {_size(limit)}. Go back and choose a smaller file."
        body = f"<!doctype html><title>File too large</title><h1>File too large</h1><p>{text}</p>".encode()
        content_type = b"text/html; charset=utf-8"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
