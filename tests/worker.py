"""Start a real Celery worker process against the test database and the configured broker."""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def _database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or ""
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{s['NAME']}"


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it if it has not gone in 20 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def celery_worker(queues: str = "train,infer,default", extra_env: dict | None = None):
    from core.celery import app

    app.control.purge()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "JOB_HEARTBEAT_TIMEOUT_S": "300",
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "core",
            "worker",
            "-Q",
            queues,
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"test{os.getpid()}@%h",
            "--loglevel=INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        stop(proc)


def wait_for(predicate, timeout: float = 60, interval: float = 0.2, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{proc.stdout.read()[-4000:]}")
        time.sleep(interval)
    tail = ""
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        tail = proc.communicate(timeout=20)[0][-4000:]
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate}\n{tail}")


@contextmanager
def asgi_server(extra_env: dict | None = None, args: tuple[str, ...] = ()):
    """The real ASGI application (HTTP and websockets) under uvicorn, on the test database; yields its URL.
    ``args``: more uvicorn options."""
    import socket
    import tempfile
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": _database_url(), "ML_SERVE_THREADS": "1", **(extra_env or {})}
    log = tempfile.NamedTemporaryFile("w+", prefix="uvicorn-", suffix=".log")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "core.serve",  # as bin/run-all serves it
            "core.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"uvicorn exited early:\n{log.read()[-4000:]}")
        try:
            with urllib.request.urlopen(url + "/accounts/login/", timeout=2):  # noqa: S310 - local http
                return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=60, interval=0.3)
        yield url
    finally:
        stop(proc)
        log.close()
