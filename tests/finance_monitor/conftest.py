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


class Trickler:
    """A raw TCP server on 127.0.0.1 that answers one byte every ``interval`` s (for ``lasts`` s at most):
    ``body`` sends the status line and headers at once and trickles a 100 kB body, ``headers`` trickles the
    status line and headers themselves. The read timeout of a client is never reached."""

    def __init__(self, mode: str, interval: float = 0.2, lasts: float = 8.0) -> None:
        import socket

        self.mode, self.interval, self.lasts = mode, interval, lasts
        self.stop = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection) -> None:
        ends = time.monotonic() + self.lasts
        with connection:
            connection.recv(65536)
            if self.mode == "body":
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                drip = b" " * 100000
            else:
                drip = b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 100000
            for byte in drip:
                if self.stop.is_set() or time.monotonic() > ends:
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return  # the client gave up
                time.sleep(self.interval)

    def close(self) -> None:
        self.stop.set()
        self.listener.close()


@pytest.fixture
def trickler():
    servers: list[Trickler] = []

    def start(mode: str) -> Trickler:
        servers.append(Trickler(mode))
        return servers[-1]

    yield start
    for server in servers:
        server.close()
