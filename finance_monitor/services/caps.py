"""Per-organisation caps on the finance monitor's standing work, checked where each thing is created.

Alert rules are evaluated by beat every few minutes, feeds are polled by beat, and every ingested document is
tagged against the whole watch-list: without a cap one organisation could fill the shared ``default`` and
``infer`` queues for everyone (a noisy neighbour). These are not plan limits (plans meter documents); they
are far above what a team watches by hand. Their numbers live beside each service (``alerts.MAX_RULES``,
``feeds.MAX_FEEDS``, ``entities.MAX_ENTRIES``, ``documents.MAX_NAMED_SOURCES``).
"""

import hashlib

from django.db import connection
from django.db.models import QuerySet

from core.errors import InvalidInput

_LOCK_NAMESPACE = b"finance_monitor.caps:"


def cap_check(*, organisation, rows: QuerySet, limit: int, what: str) -> None:
    """Inside the creating transaction, before the insert: refuse one more of ``rows`` (the organisation's
    ``what``, plural words) when it holds ``limit`` already. On PostgreSQL an advisory lock on the
    organisation's ``what``, held to the commit, makes concurrent creates count one after the other (SQLite,
    the embedded default, serialises them already)."""
    if connection.vendor == "postgresql":
        data = _LOCK_NAMESPACE + what.encode() + int(organisation.pk).to_bytes(8, "little", signed=True)
        key = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])
    if rows.count() >= limit:
        raise InvalidInput(
            f"An organisation keeps at most {limit:,} {what}: delete one to add another.",
            details={"limit": limit},
        )
