"""``core.serve``: several web processes share the connections evenly (each new one to the process with the
fewest open), count websockets and closed connections right, and a worker that dies is started again.

Real processes on a real port: ``python -m core.serve`` with two workers serving ``tests/core/serve_app.py``,
whose answers name the process (pid) holding the connection.
"""

import asyncio
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from contextlib import contextmanager

import pytest
import websockets

from tests.worker import ROOT


def _port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(port: int, workers: int, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "core.serve", "tests.core.serve_app:app", "--port", str(port)]
        + ["--workers", str(workers), "--log-level", "warning"],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


@contextmanager
def _served(workers: int = 2):
    port = _port()
    proc = _start(port, workers)
    try:
        deadline = time.monotonic() + 60
        pids: set[str] = set()
        while len(pids) < workers:  # both workers up: a connection reaches each in turn
            assert proc.poll() is None, "core.serve exited"
            assert time.monotonic() < deadline, "the workers did not start"
            conn = _connect(port)
            try:
                pids.add(_ask(conn))
            except OSError:
                time.sleep(0.2)
            finally:
                conn.close()
        yield port, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError("core.serve did not stop on SIGTERM") from None


def _connect(port: int) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port, timeout=10)


def _ask(conn: http.client.HTTPConnection) -> str:
    conn.request("GET", "/")
    response = conn.getresponse()
    assert response.status == 200
    return response.read().decode().split()[0]


def test_connections_are_dealt_evenly_and_closes_are_counted():
    with _served(workers=2) as (port, _proc):
        time.sleep(0.5)  # the start-up probes' connections closed and counted
        # eight keep-alive clients opened at once: four each (a shared accept gave 7 + 1 or 5 + 3)
        conns = [_connect(port) for _ in range(8)]
        for conn in conns:
            conn.connect()
        owners = [_ask(conn) for conn in conns]
        assert sorted(Counter(owners).values()) == [4, 4]
        # every request of a connection goes to the process that holds it
        assert [_ask(conn) for conn in conns] == owners
        # one process's four close: the next four connections all go to it (fewest open), not two each
        first = owners[0]
        for conn, owner in zip(conns, owners, strict=True):
            if owner == first:
                conn.close()
        time.sleep(0.5)
        more = [_connect(port) for _ in range(4)]
        for conn in more:
            conn.connect()
        assert [_ask(conn) for conn in more] == [first] * 4
        for conn in conns + more:
            conn.close()


def test_websockets_count_as_open_until_they_close():
    async def scenario(port: int) -> tuple[list[str], list[str]]:
        url = f"ws://127.0.0.1:{port}/ws/"
        sockets = [await websockets.connect(url) for _ in range(4)]
        owners = [await ws.recv() for ws in sockets]
        # two websockets each; one process's two close: two plain connections opened now both go to it
        # (had an upgrade counted as a close, both processes would be at 0 and the two would split)
        first = owners[0]
        for ws, owner in zip(sockets, owners, strict=True):
            if owner == first:
                await ws.close()
        await asyncio.sleep(0.5)
        loop = asyncio.get_running_loop()

        def two() -> list[str]:
            conns = [_connect(port) for _ in range(2)]
            for conn in conns:
                conn.connect()
            answers = [_ask(conn) for conn in conns]
            for conn in conns:
                conn.close()
            return answers

        plain = await loop.run_in_executor(None, two)
        for ws in sockets:
            await ws.close()
        return owners, plain, first

    with _served(workers=2) as (port, _proc):
        time.sleep(0.5)
        owners, plain, first = asyncio.run(scenario(port))
        assert sorted(Counter(owners).values()) == [2, 2]
        assert plain == [first, first]


def test_a_worker_that_dies_is_started_again_and_serves():
    with _served(workers=2) as (port, proc):
        time.sleep(0.5)
        conns = [_connect(port) for _ in range(2)]
        for conn in conns:
            conn.connect()
        owners = {_ask(conn) for conn in conns}
        assert len(owners) == 2
        victim = sorted(owners)[0]
        os.kill(int(victim), signal.SIGKILL)
        deadline = time.monotonic() + 60
        seen: set[str] = set()
        while not (len(seen) == 2 and victim not in seen):  # a new process in its place beside the other
            assert time.monotonic() < deadline, f"no new worker: {seen}"
            assert proc.poll() is None
            try:
                conn = _connect(port)
                seen.add(_ask(conn))
                conn.close()
            except OSError:
                time.sleep(0.2)
            if len(seen) > 2 or victim in seen:
                seen = set()
                time.sleep(0.2)
        for conn in conns:
            conn.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_the_client_address_is_the_peers(workers):
    with _served(workers=workers) as (port, _proc):
        conn = _connect(port)
        conn.request("GET", "/")
        assert conn.getresponse().read().decode().split()[1] == "127.0.0.1"
        conn.close()


def test_the_workers_stop_when_the_parent_is_killed_while_they_start():
    """Killed while its workers still load the application (a minute here): they stop within seconds, told
    by the kernel (PR_SET_PDEATHSIG); they have not read their socket pair yet, so its closing tells them
    nothing until they have started."""
    proc = _start(_port(), 2, {"SERVE_APP_IMPORT_S": "60"})
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(workers := _children(proc.pid)) < 2:
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.1)
        time.sleep(2.0)  # importing the application now
        proc.kill()  # no SIGTERM to pass on
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "the workers outlived their parent"
            time.sleep(0.2)
    finally:  # whatever is left (the parent's children are init's once it is gone)
        for pid in _children(proc.pid) + workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _children(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().split(") ", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie (exited, not yet reaped by init) is not alive
        return stat.read().split(") ", 1)[1][0] != "Z"
