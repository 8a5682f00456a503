"""``core.serve``: several web processes share the connections evenly (each new one to the process with the
fewest open), count websockets and closed connections right, and a worker that dies is started again.

Real processes on a real port: ``python -m core.serve`` with two workers serving ``tests/core/serve_app.py``,
whose answers name the process (pid) holding the connection.
"""

import asyncio
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


@contextmanager
def _served(workers: int = 2):
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.serve", "tests.core.serve_app:app", "--port", str(port)]
        + ["--workers", str(workers), "--log-level", "warning"],
        cwd=ROOT,
        start_new_session=True,
    )
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
        # two websockets each, held open: two plain connections opened now go one to each process
        # (an upgraded connection still counts as open; had it not, both would go to either)
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
        return owners, plain

    with _served(workers=2) as (port, _proc):
        time.sleep(0.5)
        owners, plain = asyncio.run(scenario(port))
        assert sorted(Counter(owners).values()) == [2, 2]
        assert sorted(plain) == sorted(set(owners))


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


def test_the_workers_stop_when_the_parent_is_killed():
    with _served(workers=2) as (port, proc):
        conns = [_connect(port) for _ in range(2)]
        for conn in conns:
            conn.connect()
        workers = {int(_ask(conn)) for conn in conns}
        assert len(workers) == 2 and proc.pid not in workers
        proc.kill()  # no SIGTERM to pass on: the kernel tells the workers (PR_SET_PDEATHSIG)
        proc.wait()
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "the workers outlived their parent"
            time.sleep(0.2)
        for conn in conns:
            conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie (exited, not yet reaped by init) is not alive
        return stat.read().split(") ", 1)[1][0] != "Z"
