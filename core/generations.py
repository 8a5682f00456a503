"""Generation tokens: per-process caches of rarely changing rows that are never older than a commit elsewhere.

A hot read path (a recommendation) needs rows that change rarely (an organisation's settings, its active
model version, a running experiment) on every request; reading them costs statements worth more than the
work. Here each kind of change has a name per organisation (a ``scope``: ``"registry"`` for its model
versions, a product's own for its settings). A writer calls ``bump(organisation=..., scope=...)`` in its
transaction; once that commits, the scope gets a new random token in Redis. A reader
(``GenerationCache.get``) keeps what it loaded with the tokens it read *before* loading, and loads again
when any token differs: one Redis ``MGET`` per request instead of the statements, and every process sees a
change on its next request after the commit (a write that commits while a reader loads leaves the reader
holding the old token, so the next request loads again).

Tokens are random, not counters, so a token lost with Redis (flushed, evicted) can never come back equal to
one a process holds. Inside a transaction (whose own writes are not committed, so not yet bumped), or when
Redis fails, ``get`` loads every time: the behaviour without the cache. An entry is also loaded again after
``MAX_AGE_S`` whatever the tokens say, which bounds how long a bump lost to a Redis error at commit time can
leave a process behind.

Without Redis (the embedded default) the tokens are rows (``core.tenancy.models.GenerationToken``), written in
the writer's own transaction, so they commit with the change, and read in one statement: where the chat read
the bot's settings, its active model version and its templates for every message (a quarter of the web
process's time on the embedded default, BENCHMARKS.md section 14), it reads its organisation's tokens.
"""

import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Generic, TypeVar

from django.conf import settings
from django.db import connection, transaction

from core import prepared
from core.billing.deferred import organisation_stamp, redis_client

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_AGE_S = 10.0
TOKEN_TTL_S = 7 * 24 * 3600  # a token unread for a week expires; its absence is a token of its own
MAX_ENTRIES = 10_000  # organisations per cache and process; past it the cache starts again


def in_redis() -> bool:
    """Whether the tokens live in Redis (``REDIS_URL``), else in the database."""
    return bool(settings.REDIS_URL)


def token_key(organisation, scope: str) -> str:
    return f"gen:{organisation_stamp(organisation)}:{scope}"


def bump(*, organisation, scope: str) -> None:
    """Give ``scope`` of ``organisation`` a new token once the current transaction commits (now, outside
    one). Call it in the transaction of every write that a reader of the scope must see. Without Redis the
    token's row is written now, in that transaction."""
    if not in_redis():
        _database_bump(organisation.pk, scope)
        return
    if getattr(organisation, "created_at", None) is None:  # an Organisation(pk=...) made to name one
        organisation = type(organisation).objects.get(pk=organisation.pk)
    key = token_key(organisation, scope)

    def send() -> None:
        try:
            redis_client().set(key, secrets.token_hex(8), ex=TOKEN_TTL_S)
        except Exception:  # noqa: BLE001 - readers fall back on MAX_AGE_S; the write itself has committed
            log.exception("could not bump the generation %s", key)

    transaction.on_commit(send)


def bump_for_row(row, *, scope: str) -> None:
    """``bump`` for the organisation of a tenant row just saved or deleted (a signal receiver's ``instance``);
    nothing when the organisation is gone with it (nothing of it is served)."""
    from core.tenancy.models import Organisation

    if not in_redis():
        _database_bump(row.organisation_id, scope)
        return

    organisation = (
        row.organisation
        if type(row).organisation.is_cached(row)
        else Organisation.objects.filter(pk=row.organisation_id).first()
    )
    if organisation is not None:
        bump(organisation=organisation, scope=scope)


_prefetched: ContextVar[dict[str, Any] | None] = ContextVar("trellis_generation_tokens", default=None)


@contextmanager
def prefetched(tokens: dict[str, Any]) -> Iterator[None]:
    """Inside the block (this thread's), ``GenerationCache.get`` takes the tokens of these Redis keys as they
    were read by a call the request made anyway (``core.billing.streamed.metered_streamed(prefetch=...)``
    reads them with its quota reservation) instead of reading them again: one round trip less."""
    token = _prefetched.set(tokens)
    try:
        yield
    finally:
        _prefetched.reset(token)


class GenerationCache(Generic[T]):
    """One value per organisation, loaded again when a token of ``scopes`` changes (see the module)."""

    def __init__(self, *scopes: str, max_age_s: float = MAX_AGE_S) -> None:
        self.scopes = scopes
        self.max_age_s = max_age_s
        self._entries: dict[str, tuple[tuple[Any, ...], float, T]] = {}
        self._lock = threading.Lock()

    def token_keys(self, organisation) -> list[str]:
        """The Redis keys of the organisation's tokens that ``get`` reads (for ``prefetched``)."""
        return [token_key(organisation, scope) for scope in self.scopes]

    def _redis_tokens(self, organisation) -> tuple[Any, ...]:
        keys = self.token_keys(organisation)
        given = _prefetched.get()
        if given is not None and all(key in given for key in keys):
            return tuple(given[key] for key in keys)
        return tuple(redis_client().mget(keys))

    def get(self, organisation, load: Callable[[], T]) -> T:
        if connection.in_atomic_block:
            return load()
        stamp = organisation_stamp(organisation)
        try:
            tokens = (
                self._redis_tokens(organisation)
                if in_redis()
                else _database_tokens(organisation.pk, self.scopes)
            )
        except Exception:  # noqa: BLE001 - Redis trouble: read the database, as without the cache
            log.warning("generation tokens unreadable; loading", exc_info=True)
            return load()
        now = time.monotonic()
        hit = self._entries.get(stamp)
        if hit is not None and hit[0] == tokens and hit[1] > now:
            return hit[2]
        value = load()
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[stamp] = (tokens, now + self.max_age_s, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_LOCK_SPACE = 0x5452 << 48  # the organisations' advisory lock keys: "TR" above the id's 48 bits


def _database_bump(organisation_id: int, scope: str) -> None:
    """The scope's row given a new token in the caller's transaction. On PostgreSQL the transaction first
    takes its organisation's token lock (a transaction-scoped advisory lock, held until it ends): the rows are
    locked until commit, and two transactions bumping the same two scopes in opposite orders (a row each,
    then each waiting for the other's) deadlocked, which PostgreSQL ends by failing one of them."""
    from core.tenancy.models import GenerationToken

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_SPACE + int(organisation_id)])
    GenerationToken.objects.update_or_create(
        organisation_id=organisation_id, scope=scope, defaults={"token": secrets.token_hex(8)}
    )


@functools.cache
def _tokens_sql() -> str:
    from core.tenancy.models import GenerationToken

    table, quote = GenerationToken._meta.db_table, connection.ops.quote_name
    where = f"{quote('organisation_id')} = %s"
    return f"SELECT {quote('scope')}, {quote('token')} FROM {quote(table)} WHERE {where}"  # noqa: S608


def _database_tokens(organisation_id: int, scopes: tuple[str, ...]) -> tuple[str | None, ...]:
    """The scopes' tokens from their rows (None: never bumped), in one statement."""
    found = dict(prepared.fetch_all(_tokens_sql(), [organisation_id]))
    return tuple(found.get(scope) for scope in scopes)
