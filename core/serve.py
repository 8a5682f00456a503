"""The web server: uvicorn, in one process or several that share the connections evenly.

    python -m core.serve core.asgi:application --host 127.0.0.1 --port 8000 --workers 2

With one process this is uvicorn as its own command runs it. With several (``bin/run-all``'s
``WEB_CONCURRENCY``), uvicorn's own ``--workers`` lets every process accept from one shared listening
socket, and asyncio accepts every queued connection at each wake-up: the first process to wake takes a burst
of them. Measured (BENCHMARKS.md section 15): 8 keep-alive clients split 7 + 1 or 5 + 3 between two
processes, and throughput followed the split (4 + 4: 339 requests/s, 1 + 7: 207). Long-lived websockets keep
such a split for their whole life. Here the parent process accepts every connection itself and hands it
(the file descriptor, over a Unix socket pair) to the process holding the fewest open connections, the one
served longest ago among equals: Node.js's cluster module deals connections from its primary process the
same way (round robin, its default on Linux, for the same reason). Each worker is a plain uvicorn server
without a listening socket of its own that serves the connections it is handed and tells the parent
when one has closed. The parent starts a worker again if it dies, and on SIGTERM or SIGINT stops
accepting and lets the workers finish as uvicorn does, for at most ``--timeout-graceful-shutdown`` seconds
(uvicorn's default waits for ever, and a chat socket's task could keep a stopping process alive). It imports
neither Django nor the application: it only moves descriptors.

Options: those of uvicorn that ``bin/run-all`` and the benches use.
"""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

log = logging.getLogger("trellis.serve")

READY, CLOSED, STOPPING = b"R", b"-", b"S"  # worker -> parent: serving; a connection closed; hand no more
RESTART_PAUSE_S = 1.0  # a worker that dies at once is not restarted in a tight loop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core.serve", description=__doc__.splitlines()[0])
    parser.add_argument("app", help="the ASGI application, module:attribute")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=1, help="processes serving the connections")
    parser.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--forwarded-allow-ips", default=None)
    parser.add_argument("--ws-max-size", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--ws-per-message-deflate", choices=["true", "false"], default="true")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--backlog", type=int, default=2048)
    parser.add_argument(
        "--timeout-graceful-shutdown",
        type=float,
        default=20.0,
        help="seconds a stopping process waits for its requests and sockets to finish before cancelling them",
    )
    parser.add_argument("--worker-fd", type=int, help=argparse.SUPPRESS)  # internal: a worker's socket pair
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # internal: the dealer's pid
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers is at least 1")
    return args


def uvicorn_config(args: argparse.Namespace):
    import uvicorn

    return uvicorn.Config(
        args.app,
        host=args.host,
        port=args.port,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        ws_max_size=args.ws_max_size,
        ws_per_message_deflate=args.ws_per_message_deflate == "true",
        log_level=args.log_level,
        backlog=args.backlog,
        timeout_graceful_shutdown=args.timeout_graceful_shutdown,
    )


# --- a worker: uvicorn serving the connections the parent hands it -------------------------------------


class _Connections(set):
    """uvicorn's set of open connections (its protocols), telling the parent when one has closed: a protocol
    leaves the set when its transport is closing (an HTTP protocol upgraded to a websocket leaves it too, for
    the websocket's protocol on the same transport: that is not a close)."""

    def __init__(self, closed):
        super().__init__()
        self._closed = closed

    def _left(self, protocol) -> None:
        transport = getattr(protocol, "transport", None)
        if transport is None or transport.is_closing():
            self._closed()

    def discard(self, protocol) -> None:
        if protocol in self:
            super().discard(protocol)
            self._left(protocol)

    def remove(self, protocol) -> None:
        super().remove(protocol)
        self._left(protocol)


def _die_with_parent(parent: int) -> None:
    """SIGINT to this worker when the parent dies, however it dies (Linux; elsewhere the closed socket pair
    tells a worker once it serves): uvicorn shuts down on it, and at once if it was shutting down already.
    Without it a worker still loading the application, or waiting on its connections, when the parent was
    killed was left behind holding its models' memory."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request took
        os.kill(os.getpid(), signal.SIGINT)


def _worker(args: argparse.Namespace) -> None:
    import asyncio

    import uvicorn

    _die_with_parent(args.parent)
    os.set_inheritable(args.worker_fd, False)  # a process the application starts must not hold it open
    channel = socket.socket(fileno=args.worker_fd)
    channel.setblocking(False)
    unsent = bytearray()  # notices the parent has not taken yet (its socket was full)

    def tell(what: bytes) -> None:
        """Notices to the parent, never lost: what its socket does not take now is sent after."""
        unsent.extend(what)
        try:
            sent = channel.send(unsent)
        except BlockingIOError:
            sent = 0
        except OSError:  # the parent is gone: it stops us too
            unsent.clear()
            return
        del unsent[:sent]
        if unsent:
            asyncio.get_running_loop().call_later(0.01, tell, b"")

    class HandedServer(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            self.server_state.connections = _Connections(lambda: tell(CLOSED))
            await super().startup(sockets=[])  # no listening socket of its own
            if self.should_exit:
                return
            loop = asyncio.get_running_loop()
            config = self.config

            def create_protocol(_loop=None):
                return config.http_protocol_class(
                    config=config, server_state=self.server_state, app_state=self.lifespan.state, _loop=_loop
                )

            def handed() -> None:
                for _ in range(64):  # what is queued, a bounded number per wake-up
                    try:
                        data, fds, flags, _addr = socket.recv_fds(channel, 64, 64)
                    except (BlockingIOError, InterruptedError):
                        return
                    except OSError:
                        log.warning("reading handed connections failed", exc_info=True)
                        return
                    if not data:  # the parent has gone
                        loop.remove_reader(channel.fileno())
                        self.should_exit = True
                        return
                    for fd in fds:
                        sock = socket.socket(fileno=fd)
                        if self.should_exit:  # stopping: the client connects again, to another worker
                            sock.close()
                            tell(CLOSED)
                            continue
                        sock.setblocking(False)
                        loop.create_task(self._serve_one(loop, create_protocol, sock))
                    lost = data.count(b"c") - len(fds)  # out of descriptors here (MSG_CTRUNC): the kernel
                    if lost > 0 or flags & socket.MSG_CTRUNC:  # closed them; the parent counts them closed
                        log.warning("%s handed connections lost: no descriptors left", max(lost, 0))
                        tell(CLOSED * max(lost, 0))

            loop.add_reader(channel.fileno(), handed)
            tell(READY)

        async def _serve_one(self, loop, create_protocol, sock) -> None:
            try:
                await loop.connect_accepted_socket(create_protocol, sock)
            except OSError:  # the client left before it was served
                sock.close()
                tell(CLOSED)

        async def shutdown(self, sockets=None) -> None:
            tell(STOPPING)  # the parent hands it nothing more (one in flight meanwhile is closed at once)
            await super().shutdown(sockets=sockets)

    # Loading the application (Django, the models) takes seconds: until uvicorn serves and takes SIGINT as
    # "shut down", SIGINT (the parent's death, a Ctrl-C) ends the worker at once.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    config = uvicorn_config(args)
    config.load()
    HandedServer(config).run()


# --- the parent: accept, hand each connection to the least busy worker ----------------------------------


@dataclass
class Worker:
    slot: int
    process: subprocess.Popen
    channel: socket.socket
    ready: bool = False  # serving, and not stopping
    open: int = 0  # connections handed and not yet closed
    full_until: float = 0.0  # its socket was full (its loop busy): others first until then
    handed_at: int = 0  # when it was last handed one (a counter): ties go to the one served longest ago
    started: float = field(default_factory=time.monotonic)


class Dealer:
    def __init__(self, args: argparse.Namespace, argv: list[str]):
        self.args, self.argv = args, argv
        self.selector = selectors.DefaultSelector()
        self.workers: dict[int, Worker] = {}
        self.handed = 0
        self.stopping = False
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        self.listener = socket.create_server((args.host, args.port), family=family, backlog=args.backlog)
        self.listener.setblocking(False)
        self.listening = False

    def _start(self, slot: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [sys.executable, "-m", "core.serve", *self.argv, "--worker-fd", str(theirs.fileno())]
        command += ["--parent", str(os.getpid())]
        process = subprocess.Popen(command, pass_fds=[theirs.fileno()])  # noqa: S603 - our own module
        theirs.close()
        ours.setblocking(False)
        worker = Worker(slot, process, ours)
        self.workers[slot] = worker
        self.selector.register(ours, selectors.EVENT_READ, ("worker", slot))

    def _listen(self, on: bool) -> None:
        """Accept only while some worker is ready (else connections wait in the kernel's backlog)."""
        if on and not self.listening:
            self.selector.register(self.listener, selectors.EVENT_READ, ("listener", None))
        elif not on and self.listening:
            self.selector.unregister(self.listener)
        self.listening = on

    def _candidates(self) -> list[Worker]:
        """Ready workers, fewest open connections first (then the one served longest ago); a worker whose
        socket was just full goes last."""
        now = time.monotonic()
        ready = [w for w in self.workers.values() if w.ready]
        return sorted(ready, key=lambda w: (w.full_until > now, w.open, w.handed_at))

    def _accept(self) -> None:
        for _ in range(64):  # a bounded number per wake-up: the workers' notices are read between
            if not self._candidates():
                self._listen(False)
                return
            try:
                conn, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. out of descriptors: try again at the next wake-up
                log.warning("accept failed", exc_info=True)
                return
            with conn:
                self._hand(conn)

    def _hand(self, conn: socket.socket) -> None:
        for worker in self._candidates():
            try:
                socket.send_fds(worker.channel, [b"c"], [conn.fileno()])
            except (BlockingIOError, InterruptedError):  # its loop is busy: the next worker
                worker.full_until = time.monotonic() + 0.05
                continue
            except OSError:  # it is going: the next worker
                log.warning("handing a connection to web worker %s failed", worker.slot, exc_info=True)
                worker.full_until = time.monotonic() + 0.05
                continue
            worker.open += 1
            self.handed += 1
            worker.handed_at = self.handed
            return
        log.warning("no web worker could take a connection: closed")

    def _heard(self, slot: int) -> None:
        worker = self.workers.get(slot)
        if worker is None:
            return
        try:
            data = worker.channel.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the worker exited
            self._gone(worker)
            return
        if STOPPING in data:
            worker.ready = False
        elif READY in data:
            worker.ready = True
        closed = data.count(CLOSED)
        if closed > worker.open:
            log.warning("web worker %s reported %s closes for %s open", worker.slot, closed, worker.open)
        worker.open = max(0, worker.open - closed)
        self._listen(not self.stopping)

    def _gone(self, worker: Worker) -> None:
        self.selector.unregister(worker.channel)
        worker.channel.close()
        code = worker.process.wait()
        del self.workers[worker.slot]
        if self.stopping:
            return
        log.warning(
            "web worker %s (pid %s) exited with %s: starting it again", worker.slot, worker.process.pid, code
        )
        if time.monotonic() - worker.started < RESTART_PAUSE_S:
            time.sleep(RESTART_PAUSE_S)
        self._start(worker.slot)

    def _stop(self, signum, _frame) -> None:
        self.stopping = True
        self._listen(False)  # at once: the select under way resumes without the listener

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for slot in range(self.args.workers):
            self._start(slot)
        print(
            f"Trellis web: {self.args.workers} processes on {self.args.host}:{self.args.port}, each new "
            "connection to the one with the fewest open",
            flush=True,
        )
        while not self.stopping:
            for key, _events in self.selector.select(timeout=1.0):
                kind, slot = key.data
                if kind == "listener":
                    self._accept()
                else:
                    self._heard(slot)
        return self._shutdown()

    def _shutdown(self) -> int:
        self._listen(False)
        self.listener.close()
        for worker in self.workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.args.timeout_graceful_shutdown + 10
        for worker in self.workers.values():
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.channel.close()
        return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.worker_fd is not None:
        _worker(args)
        return 0
    if args.workers == 1:
        import uvicorn

        uvicorn.Server(uvicorn_config(args)).run()
        return 0
    return Dealer(args, argv).run()


if __name__ == "__main__":
    sys.exit(main())
