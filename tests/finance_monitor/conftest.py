"""A local HTTP server whose answers each test scripts (feeds, hostile feeds, webhook receivers)."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class Script:
    """path -> handler(request) returning (status, headers, body) or a callable that writes itself."""

    def __init__(self) -> None:
        self.routes: dict = {}
        self.requests: list[dict] = []


def _handler(script: Script):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _serve(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
            script.requests.append(request)
            route = script.routes.get(self.path.split("?")[0])
            if route is None:
                self.send_response(404)
                self.end_headers()
                return
            answer = route(request)
            if callable(answer):
                answer(self)
                return
            code, headers, payload = answer
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            if "Content-Length" not in headers:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

    return Handler


@pytest.fixture
def http_server():
    script = Script()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield script
    server.shutdown()
    server.server_close()


def slow_writer(seconds: float):
    def write(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "application/rss+xml")
        handler.end_headers()
        for _ in range(int(seconds * 10)):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.1)

    return write
