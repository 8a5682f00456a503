"""The ledger flusher: Redis stream lines (``core.billing.deferred``) written into ``UsageEvent`` and
``UsageCounter`` in one transaction per batch, acknowledged after the write.

A thread in each process that writes lines to the stream runs ``flusher_start`` (through ``flusher_ensure``),
or, with ``LEDGER_FLUSHER=process``, one process of its own does (``manage.py flush_ledger --follow``,
``flush_forever``); ``manage.py flush_ledger`` drains by hand (``ledger_drain``). A line whose idempotency key
is already in the ledger is skipped, so a batch replayed after a crash or claimed from a killed process cannot
count twice. Apart from
``core.billing.deferred`` (the request side) so that ``core.billing.services``, which the flusher writes
through, does not import it back.
"""

import json
import logging
import os
import socket
import threading
import time
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import redis
from django.conf import settings
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from core.billing.deferred import (
    CLAIM_IDLE_MS,
    FLUSH_BATCH,
    FLUSH_INTERVAL_S,
    GROUP,
    STREAM,
    organisation_stamp,
    redis_client,
)
from core.billing.models import UsageEvent
from core.billing.services import _add_to_counter, period_bounds
from core.tenancy.models import Organisation

log = logging.getLogger(__name__)
_lock = threading.Lock()

_group_ready = False


def _ensure_group(client) -> None:
    global _group_ready
    if _group_ready:
        return
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    _group_ready = True


def _decode(fields: dict[bytes, bytes]) -> list[dict[str, str]]:
    """A stream entry's ledger lines: a request's entry carries all its lines (``lines``); an entry written
    before that carries one line in its own fields."""
    entry = {k.decode(): v.decode() for k, v in fields.items()}
    if "lines" not in entry:
        return [entry]
    common = {k: entry[k] for k in ("org", "stamp", "api_key", "at")}
    return [
        {
            **common,
            "meter": meter,
            "quantity": repr(float(quantity)),
            "key": f"{entry['key']}:{index}",
            "metadata": json.dumps(metadata, separators=(",", ":")),
        }
        for index, (meter, quantity, metadata) in enumerate(json.loads(entry["lines"]))
    ]


_LEDGER_COLUMNS = (
    "organisation",
    "meter",
    "quantity",
    "idempotency_key",
    "api_key",
    "metadata",
    "created_at",
    "updated_at",
)


def _insert(org_id: int, rows: list[dict[str, str]]) -> None:
    """The rows as ledger lines in one ``executemany`` of a single-row INSERT (psycopg pipelines it; what
    ``bulk_create`` sends, without building a model instance per line: the flusher writes two lines per
    metered request)."""
    meta, now = UsageEvent._meta, timezone.now()
    fields = [meta.get_field(name) for name in _LEDGER_COLUMNS]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)  # type: ignore[union-attr]
    quantity, metadata, stamp = (meta.get_field(n) for n in ("quantity", "metadata", "created_at"))
    at = stamp.get_db_prep_save(now, connection)
    params = [
        (
            org_id,
            r["meter"],
            quantity.get_db_prep_save(Decimal(r["quantity"]), connection),
            r["key"],
            int(r["api_key"]) if r["api_key"] else None,
            metadata.get_db_prep_save(json.loads(r["metadata"]), connection),
            at,
            at,
        )
        for r in rows
    ]
    # identifiers from the model's metadata, every value a parameter
    table = connection.ops.quote_name(meta.db_table)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _insert_new_postgresql(org_id: int, rows: list[dict[str, str]]) -> set[str]:
    """PostgreSQL: the rows in one statement (arrays unnested), skipping any whose idempotency key the ledger
    already has (``ON CONFLICT DO NOTHING`` on the unique constraint; a concurrent writer of the same key is
    waited for, then skipped): the keys that were new."""
    meta = UsageEvent._meta
    name = {n: connection.ops.quote_name(meta.get_field(n).column) for n in _LEDGER_COLUMNS}  # type: ignore[union-attr]
    table = connection.ops.quote_name(meta.db_table)
    # identifiers from the model's metadata, every value a parameter
    sql = (
        f"INSERT INTO {table} ({', '.join(name[n] for n in _LEDGER_COLUMNS)}) "  # noqa: S608
        "SELECT %s, u.meter, u.quantity, u.key, u.api_key, u.metadata::jsonb, %s, %s "
        "FROM unnest(%s::text[], %s::numeric[], %s::text[], %s::bigint[], %s::text[]) "
        "AS u(meter, quantity, key, api_key, metadata) "
        f"ON CONFLICT ({name['organisation']}, {name['idempotency_key']}) DO NOTHING "
        f"RETURNING {name['idempotency_key']}"
    )
    now = timezone.now()
    params = [
        org_id,
        now,
        now,
        [r["meter"] for r in rows],
        [r["quantity"] for r in rows],
        [r["key"] for r in rows],
        [int(r["api_key"]) if r["api_key"] else None for r in rows],
        [r["metadata"] for r in rows],
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {key for (key,) in cursor.fetchall()}


def _write(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
    """Write a batch of stream entries into the ledger in one transaction; how many lines were new."""

    rows = [line for _id, fields in entries for line in _decode(fields)]
    organisations = {  # a deleted organisation (core.privacy.services) takes no new lines
        o.pk: o
        for o in Organisation.objects.filter(pk__in={int(r["org"]) for r in rows}, deleted_at__isnull=True)
    }
    live = [
        r
        for r in rows
        if int(r["org"]) in organisations and organisation_stamp(organisations[int(r["org"])]) == r["stamp"]
    ]
    if len(live) < len(rows):
        log.warning("dropped %d ledger lines of organisations that no longer exist", len(rows) - len(live))
    by_org: dict[int, list[dict[str, str]]] = defaultdict(list)
    for r in live:
        by_org[int(r["org"])].append(r)
    new = 0
    # Counters are updated in one order (organisation, meter, period) by every flusher: two web processes'
    # flushers writing the same organisation's meters in different orders deadlocked on PostgreSQL.
    with transaction.atomic():
        for org_id, org_rows in sorted(by_org.items()):
            organisation = organisations[org_id]
            unique = list({r["key"]: r for r in org_rows}.values())
            if connection.vendor == "postgresql":
                written = _insert_new_postgresql(org_id, unique)
                fresh = [r for r in unique if r["key"] in written]
            else:
                seen = set(
                    UsageEvent.all_tenants.filter(
                        organisation_id=org_id, idempotency_key__in=[r["key"] for r in unique]
                    ).values_list("idempotency_key", flat=True)
                )
                fresh = [r for r in unique if r["key"] not in seen]
                _insert(org_id, fresh)
            totals: dict[tuple[str, datetime], Decimal] = defaultdict(Decimal)
            for r in fresh:
                start = period_bounds(datetime.fromisoformat(r["at"]))[0]
                totals[(r["meter"], start)] += Decimal(r["quantity"])
            for (meter, start), amount in sorted(totals.items()):
                _add_to_counter(organisation, meter, amount, start, enforce=False)
            new += len(fresh)
    return new


def _consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def ledger_flush_once(
    *, consumer: str, count: int = 1000, block_ms: int | None = 200, claim_idle_ms: int | None = None
) -> tuple[int, int]:
    """Read up to ``count`` lines (first those a dead flusher left pending), write them, acknowledge them:
    (lines read, lines new to the ledger)."""
    global _group_ready
    try:
        return _flush_once(consumer=consumer, count=count, block_ms=block_ms, claim_idle_ms=claim_idle_ms)
    except redis.ResponseError as exc:
        if "NOGROUP" not in str(exc):
            raise
        _group_ready = False  # the stream went (its Redis database was emptied): make it again
        return 0, 0


def _flush_once(
    *, consumer: str, count: int, block_ms: int | None, claim_idle_ms: int | None
) -> tuple[int, int]:
    client = redis_client()
    _ensure_group(client)
    entries: list = []
    if claim_idle_ms is not None:
        _next, claimed, *_deleted = client.xautoclaim(
            STREAM, GROUP, consumer, claim_idle_ms, "0-0", count=count
        )
        entries = [e for e in claimed if e[1]]
    if not entries:
        # our own pending lines first (a write that failed), then new ones
        for start in ("0", ">"):
            got = client.xreadgroup(
                GROUP, consumer, {STREAM: start}, count=count, block=block_ms if start == ">" else None
            )
            entries = [e for e in (got[0][1] if got else []) if e[1]]
            if entries:
                break
    if not entries:
        return 0, 0
    for _attempt in range(3):
        try:
            new = _write(entries)
            break
        except IntegrityError:  # another flusher wrote one of these keys meanwhile: the next try skips it
            continue
    else:
        raise RuntimeError("could not write a ledger batch")
    ids = [entry_id for entry_id, _fields in entries]
    pipe = client.pipeline(transaction=False)
    pipe.xack(STREAM, GROUP, *ids)
    pipe.xdel(STREAM, *ids)
    pipe.execute()
    return len(entries), new


def ledger_drain(*, claim_idle_ms: int = 0, wait_s: float = 10.0) -> int:
    """Write every line in the stream, pending ones of any (dead) flusher included; lines written.

    A read that finds nothing does not mean the stream is empty: a flusher thread of this or another process
    may have taken the lines between this drain's claim and its read, and be writing them. The drain goes on
    (claiming what became pending, reading what came) until the stream holds no line, every line written being
    acknowledged and deleted, or ``wait_s`` passed (lines a live flusher holds that ``claim_idle_ms`` does not
    let it take are written by that flusher meanwhile)."""
    consumer = f"drain:{_consumer_name()}"
    client, total = redis_client(), 0
    _ensure_group(client)
    deadline = time.monotonic() + wait_s
    while True:
        read, new = ledger_flush_once(consumer=consumer, block_ms=None, claim_idle_ms=claim_idle_ms)
        total += new
        if read:
            continue
        if not client.xlen(STREAM) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    _consumer_forget(client, consumer)  # it has nothing pending: every read was written
    return total


# What Redis answers about a group whose stream went (its Redis database was emptied): NOGROUP, or for XGROUP
# subcommands on a missing key (Redis 7) "The XGROUP subcommand requires the key to exist".
_STREAM_GONE = ("NOGROUP", "requires the key to exist")


def _consumer_forget(client, consumer: str) -> None:
    """Remove ``consumer`` from the group; nothing to do when the stream went meanwhile."""
    global _group_ready
    try:
        client.xgroup_delconsumer(STREAM, GROUP, consumer)
    except redis.ResponseError as exc:
        if not any(sign in str(exc) for sign in _STREAM_GONE):
            raise
        _group_ready = False  # made again on the next read


_flusher: threading.Thread | None = None
_flusher_stop: threading.Event | None = None


def flusher_ensure() -> None:
    """What a process that has written a line calls: start its flusher thread, unless the setting
    ``LEDGER_FLUSHER`` leaves the flushing to a process of its own."""
    if settings.LEDGER_FLUSHER == "thread":
        flusher_start()


def flusher_start() -> None:
    """Start this process's flusher thread (once)."""
    global _flusher, _flusher_stop
    with _lock:
        if _flusher is not None and _flusher.is_alive():
            return
        _flusher_stop = threading.Event()
        _flusher = threading.Thread(
            target=flush_forever, args=(_flusher_stop,), name="ledger-flusher", daemon=True
        )
        _flusher.start()


def flusher_stop(timeout: float | None = None) -> None:
    """End this process's flusher thread after the batch it is writing (between batches nothing it read is
    left unwritten); a later ``flusher_start`` starts another. The tests stop it before the database is
    emptied after a test: its writes beside a ``TRUNCATE`` deadlock."""
    global _flusher, _flusher_stop
    with _lock:
        thread, stop = _flusher, _flusher_stop
        _flusher, _flusher_stop = None, None
    if stop is not None:
        stop.set()
    if thread is not None:
        thread.join(timeout)


def flush_forever(stop: threading.Event, *, claim_idle_ms: int = CLAIM_IDLE_MS) -> None:
    """Write the stream's lines as they come, a batch per ``FLUSH_INTERVAL_S``, taking over lines a dead
    flusher left (read ``claim_idle_ms`` ago and not written), until ``stop`` is set: the flusher thread, or
    ``manage.py flush_ledger --follow``."""
    consumer = _consumer_name()
    last_claim = 0.0
    try:
        while not stop.is_set():
            try:
                claim = None
                if time.monotonic() - last_claim > 5:
                    claim, last_claim = claim_idle_ms, time.monotonic()
                read, _new = ledger_flush_once(
                    consumer=consumer, count=FLUSH_BATCH, block_ms=1000, claim_idle_ms=claim
                )
                if (
                    read < FLUSH_BATCH
                ):  # let lines gather: a batch per interval, not a transaction per request
                    stop.wait(FLUSH_INTERVAL_S)
            except Exception:  # noqa: BLE001 - keep flushing; the lines stay in the stream until written
                log.exception("ledger flush failed")
                close_old_connections()
                stop.wait(1)
    finally:
        connection.close()  # this thread's own connection
