"""The PostgreSQL connection pool (DB_POOL_MAX_SIZE, DB_POOL_TIMEOUT_S): settings read and checked, and a
pooled connection used for real in a process of its own (the settings are read at start)."""

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

from tests.worker import ROOT, _database_url

READ = (
    # the settings module alone (no django.setup(): importing every app costs seconds a process)
    "import json, os; os.environ['DJANGO_SETTINGS_MODULE']='core.settings';"
    "from django.conf import settings as s;"
    "print(json.dumps([s.DB_POOL_MAX_SIZE, s.DB_POOL_TIMEOUT_S, s.DATABASES['default'].get('OPTIONS', {})]))"
)


def _run(code: str, env_extra: dict, tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in (
            "DATABASE_URL",
            "DB_POOL_MAX_SIZE",
            "DB_POOL_TIMEOUT_S",
            "CONN_MAX_AGE",
            "DB_PREPARED_STATEMENTS",
        )
    }
    env.update({"TRELLIS_VAR_DIR": str(tmp_path), **env_extra})
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _settings(env_extra, tmp_path):
    result = _run(READ, env_extra, tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_pool_is_off_by_default_and_ignored_on_sqlite(tmp_path):
    assert _settings({"DATABASE_URL": "postgres://u@db.example.com/t"}, tmp_path) == [0, 10.0, {}]
    size, _timeout, options = _settings({"DB_POOL_MAX_SIZE": "8"}, tmp_path)  # the embedded default
    assert size == 8 and "pool" not in options


def test_the_pool_settings_reach_django(tmp_path):
    env = {
        "DATABASE_URL": "postgres://u@db.example.com/t",
        "DB_POOL_MAX_SIZE": "12",
        "DB_POOL_TIMEOUT_S": "2.5",
    }
    assert _settings(env, tmp_path)[2]["pool"] == {"min_size": 4, "max_size": 12, "timeout": 2.5}
    env["DB_POOL_MAX_SIZE"] = "2"
    assert _settings(env, tmp_path)[2]["pool"] == {"min_size": 2, "max_size": 2, "timeout": 2.5}


def test_prepared_statements_follow_the_connections_life_unless_told(tmp_path):
    read = READ[: READ.index("print(")] + "print(json.dumps(s.DB_PREPARED_STATEMENTS))"
    pg = {"DATABASE_URL": "postgres://u@db.example.com/t"}

    def prepared(**env) -> bool:
        result = _run(read, {**pg, **env}, tmp_path)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    assert prepared() is False  # a connection per request: preparing would cost more than it saves
    assert prepared(DB_POOL_MAX_SIZE="4") is True and prepared(CONN_MAX_AGE="60") is True
    assert prepared(DB_POOL_MAX_SIZE="4", DB_PREPARED_STATEMENTS="0") is False  # behind PgBouncer
    assert prepared(DB_PREPARED_STATEMENTS="1") is True
    result = _run(read, {**pg, "DB_PREPARED_STATEMENTS": "yes"}, tmp_path)
    assert (
        result.returncode != 0
        and "DB_PREPARED_STATEMENTS: 'yes' is not valid; give auto, 0 or 1." in result.stderr
    )


@pytest.mark.parametrize(
    ("env_extra", "message"),
    [
        (
            {"DB_POOL_MAX_SIZE": "many"},
            "DB_POOL_MAX_SIZE: 'many' is not valid; give a whole number 0 or more.",
        ),
        ({"DB_POOL_MAX_SIZE": "-1"}, "DB_POOL_MAX_SIZE: '-1' is not valid; give a whole number 0 or more."),
        ({"DB_POOL_MAX_SIZE": "2.5"}, "DB_POOL_MAX_SIZE: '2.5' is not valid; give a whole number 0 or more."),
        ({"DB_POOL_TIMEOUT_S": "0"}, "DB_POOL_TIMEOUT_S: '0' is not valid; give a number over 0.0."),
        ({"DB_POOL_TIMEOUT_S": "soon"}, "DB_POOL_TIMEOUT_S: 'soon' is not valid; give a number over 0.0."),
        (
            {"DATABASE_URL": "postgres://u@db.example.com/t", "DB_POOL_MAX_SIZE": "4", "CONN_MAX_AGE": "60"},
            "leave CONN_MAX_AGE at 0 when the pool is on",
        ),
    ],
)
def test_bad_pool_settings_are_refused_with_a_clear_error(env_extra, message, tmp_path):
    result = _run(READ, env_extra, tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


USE = """
import django, json, os, threading
os.environ['DJANGO_SETTINGS_MODULE'] = 'core.settings'
django.setup()
from django.db import connection, close_old_connections
from psycopg_pool import PoolTimeout

def backend_pid():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    connection.close()  # back to the pool (without the pool: the connection ends)
    return pid

pids = [backend_pid() for _ in range(5)]
pooled = connection.pool is not None
# both pooled connections held by two threads: a third call waits DB_POOL_TIMEOUT_S, then fails
held, release, errors = threading.Barrier(3), threading.Event(), []

def hold():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    held.wait()
    release.wait()
    connection.close()

threads = [threading.Thread(target=hold) for _ in range(2)]
for thread in threads:
    thread.start()
held.wait()
def third():
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        errors.append(type(exc.__cause__ or exc).__name__)
    finally:
        connection.close()
extra = threading.Thread(target=third)
extra.start()
extra.join()
release.set()
for thread in threads:
    thread.join()
print(json.dumps({"pids": pids, "pooled": pooled, "errors": errors, "after": backend_pid()}))
"""


@pytest.mark.django_db(transaction=True)
def test_a_pooled_connection_is_reused_and_the_pool_bounds_connections(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the pool is PostgreSQL's (DATABASE_URL)")
    env = {"DATABASE_URL": _database_url(), "DB_POOL_MAX_SIZE": "2", "DB_POOL_TIMEOUT_S": "0.5"}
    result = _run(USE, env, tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["pooled"]
    assert len(set(out["pids"])) <= 2  # five calls on at most the pool's two server connections
    assert out["errors"] == ["PoolTimeout"]
    assert out["after"]  # the pool still lends once the holders are done

    # the peer: without the pool, every call is a new server connection
    env["DB_POOL_MAX_SIZE"] = "0"
    result = _run(USE.replace("from psycopg_pool import PoolTimeout\n", ""), env, tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert not out["pooled"] and len(set(out["pids"])) == 5 and out["errors"] == []
