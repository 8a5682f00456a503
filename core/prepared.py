"""Rows of a hot statement, prepared on the server once per connection (PostgreSQL, psycopg 3).

Django binds parameters on the client and leaves psycopg's prepared statements off (``prepare_threshold``
None, for connection poolers), so PostgreSQL parses and plans every statement at every execution: for the
recommender's history read, planning cost more than running it (0.26 ms p50 a read, 0.08 prepared;
BENCHMARKS.md section 15). :func:`fetch_all` runs a statement the ORM compiled (``%s`` placeholders) through a
server-binding cursor that prepares it, inside Django's own cursor wrapper (query logging, execute wrappers,
``CaptureQueriesContext`` see it as any statement). Off (an ordinary execute) on other databases and where
``settings.DB_PREPARED_STATEMENTS`` is off: connections that last one request, a pooler in transaction mode.
"""

import functools
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection

# psycopg prepares a statement after this many executions, or at once when asked (``prepare=True``): so high
# that only what this module runs is prepared, as if Django's "never" held for everything else
ONLY_WHEN_ASKED = 2**31 - 1


def fetch_all(sql: str, params: Sequence[Any]) -> list[tuple]:
    """``cursor.execute(sql, params); cursor.fetchall()``, prepared where it pays (see the module)."""
    if connection.vendor != "postgresql" or not settings.DB_PREPARED_STATEMENTS:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    if connection.connection.prepare_threshold is None:  # Django's None turns preparing off altogether
        connection.connection.prepare_threshold = ONLY_WHEN_ASKED
    raw = _prepared_cursor_class()(connection.connection)
    wrapped = connection._prepare_cursor(raw)  # Django's wrapper: logging, execute wrappers, thread checks
    with wrapped as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


@functools.cache
def _prepared_cursor_class() -> type:
    """Django's server-binding cursor (psycopg 3 only, so imported at first use), preparing."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    class PreparedCursor(ServerBindingCursor):  # type: ignore[misc, valid-type]
        """Binds on the server and prepares every statement it runs (psycopg keeps the names per connection
        and reuses them)."""

        def execute(self, query, params=None, *, prepare=None, binary=None):  # noqa: ARG002
            return super().execute(query, params, prepare=True, binary=binary)

    return PreparedCursor
