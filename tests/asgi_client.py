"""One HTTP request through an ASGI app in process, for tests that compare a layer below Django with
Django's own answer: status, headers, body and whether Django saw a request."""

import asyncio
import json

from django.core.signals import request_started


def asgi_call(
    app,
    path: str,
    query: str = "",
    headers: tuple[tuple[bytes, bytes], ...] = (),
    *,
    method: str = "GET",
    body: bytes = b"",
):
    """(status, headers, JSON body (the bytes when it is not JSON), whether Django saw a request). A ``host``
    in ``headers`` replaces the default one; the body is sent in one message."""
    seen: list[object] = []

    def started(**kwargs) -> None:
        seen.append(kwargs)

    host = [] if any(name == b"host" for name, _ in headers) else [(b"host", b"testserver")]

    async def run():
        sent: list[dict] = []
        first = True

        async def receive():
            nonlocal first
            if first:
                first = False
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never leaves: Django cancels this when it answers

        async def send(message):
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [*host, *headers],
            "client": ("127.0.0.1", 40000),
            "server": ("testserver", 80),
        }
        await app(scope, receive, send)
        return sent

    request_started.connect(started)
    try:
        sent = asyncio.run(run())
    finally:
        request_started.disconnect(started)
    start = sent[0]
    content = b"".join(m.get("body", b"") for m in sent[1:])
    try:
        decoded = json.loads(content)
    except ValueError:
        decoded = content  # Django's own 400 page (DisallowedHost, too many fields) or a redirect
    return start["status"], dict(start["headers"]), decoded, bool(seen)
