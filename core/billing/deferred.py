"""Metering at request speed: rate limit and quotas in Redis, the ledger through a Redis stream.

The hot path (``core.api.fast_predict``) admits a request with one Redis script (the per-key sliding-window
rate limit of ``core.ratelimit``, on the same counters, and the monthly quotas it needs, checked and reserved
together), and after the work succeeded appends its ledger lines to a Redis stream before it answers. A
flusher (a thread in each web process that serves the hot path; ``manage.py flush_ledger`` drains by hand)
reads the stream through a consumer group and writes the lines into ``UsageEvent`` and ``UsageCounter`` in
one transaction per batch, then acknowledges them. Each line carries an idempotency key made for its request,
and a line whose key is already in the ledger is skipped: a batch replayed after a crash (written, not yet
acknowledged) or claimed from a killed process cannot count twice. Lines a killed process had read but not
written stay pending in the group and are claimed by the next flusher.

Quota counters in Redis (``billing:used:<organisation>:<meter>:<YYYY-MM>``) start from the database's
``UsageCounter`` the first time a period is used and then move with every reservation; charges written
straight to the database (``usage_record``: jobs, the chatbot, API calls through the full stack) add to them
after commit. The database's counter trails the stream by the flush interval, so a check through the full
stack may let a request pass that the hot path would refuse for at most that long.

The stream is as durable as Redis is (run it with appendonly on); ``cache.clear()`` empties the Redis
database the cache uses, so production must not call it while lines are pending.
"""

import json
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, close_old_connections, transaction

from core.billing.models import UsageCounter, UsageEvent

log = logging.getLogger(__name__)

STREAM = "billing:ledger"
GROUP = "ledger-flusher"
USED_TTL_S = 40 * 24 * 3600  # a period's counter outlives its month
CLAIM_IDLE_MS = 30_000  # a line read this long ago and not acknowledged belongs to a dead flusher
FLUSH_INTERVAL_S = 0.25  # the flusher writes what gathered in this long in one batch (one transaction)
FLUSH_BATCH = 2000

# KEYS: the quota counters. ARGV: slot-key prefix, current slot, slots, requests per minute, slot TTL, then
# limit and quantity per quota counter. The rate-limit slot keys are built here from the prefix (one node).
_ADMIT = """
local prefix, current, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rpm = tonumber(ARGV[4])
local names = {}
for i = 1, n do names[i] = prefix .. (current - n + i - 1) end
local past = redis.call('MGET', unpack(names))
local total = 0
for i = 1, n do
  if past[i] then total = total + tonumber(past[i]) end
end
if rpm <= 0 then return {1, total} end
local slot = prefix .. current
local position = redis.call('INCR', slot)
if position == 1 then redis.call('EXPIRE', slot, tonumber(ARGV[5])) end
if total + position > rpm then
  redis.call('DECR', slot)
  local counts = {}
  for i = 1, n do counts[i] = tonumber(past[i] or 0) end
  return {1, total + position - 1, counts}
end
for j = 1, #KEYS do
  local used = redis.call('GET', KEYS[j])
  if not used then
    redis.call('DECR', slot)
    return {3, j}
  end
  if tonumber(used) + tonumber(ARGV[5 + 2 * j]) > tonumber(ARGV[4 + 2 * j]) then
    return {2, j, used}
  end
end
for j = 1, #KEYS do redis.call('INCRBYFLOAT', KEYS[j], ARGV[5 + 2 * j]) end
return {0, total + position}
"""

_ADD_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1]) end
return false
"""

_lock = threading.Lock()
_client = None
_scripts: dict[str, Any] = {}


def enabled() -> bool:
    """The hot path needs Redis; the embedded default (no REDIS_URL) meters through the database only."""
    return bool(settings.REDIS_URL) and settings.API_FAST_PREDICT


def redis_client():
    global _client
    with _lock:
        if _client is None:
            import redis

            _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=10, health_check_interval=30)
            _scripts["admit"] = _client.register_script(_ADMIT)
            _scripts["add"] = _client.register_script(_ADD_IF_PRESENT)
    return _client


def organisation_stamp(organisation) -> str:
    """Names an organisation's Redis keys: its id and creation time (a recreated database reuses ids)."""
    return f"{organisation.pk}.{int(organisation.created_at.timestamp() * 1_000_000)}"


def used_key(organisation, meter: str, period: str) -> str:
    return f"billing:used:{organisation_stamp(organisation)}:{meter}:{period}"


@dataclass(frozen=True)
class Admission:
    status: str  # "ok", "rate_limited", "quota"
    meter: str = ""  # the meter that refused
    used: float = 0.0
    retry_after: float = 0.0


def admit(
    *,
    organisation,
    rate_key: str,
    requests_per_minute: int,
    charges: list[tuple[str, float, int]],  # (meter, quantity, limit)
    period: str,
    now: float | None = None,
) -> Admission:
    """Count one hit on ``rate_key`` and reserve every charge, or refuse with the reason (nothing kept).

    The rate-limit counters are ``core.ratelimit``'s (60 one-second slots, keys made by the cache), so the
    full stack and the hot path share one limit per key.
    """
    from core.ratelimit import retry_after, slot_key

    client = redis_client()
    now = time.time() if now is None else now
    window, slots = 60.0, 60
    width = window / slots
    current = math.floor(now / width)
    prefix = cache.make_key(slot_key(rate_key, current))[: -len(str(current))]  # less the slot number
    keys = [used_key(organisation, meter, period) for meter, _q, _l in charges]
    args: list[Any] = [prefix, current, slots, requests_per_minute, int(window + 2 * width)]
    for _meter, quantity, limit in charges:
        args += [limit, repr(float(quantity))]
    for _attempt in range(3):
        result = _scripts["admit"](keys=keys, args=args, client=client)
        code = int(result[0])
        if code == 0:
            return Admission("ok")
        if code == 1:
            counts = [int(c) for c in result[2]] if len(result) > 2 else []
            wait = retry_after(counts, int(result[1]) + 1 - requests_per_minute, current, slots, width, now)
            return Admission("rate_limited", retry_after=wait if counts else window)
        meter = charges[int(result[1]) - 1][0]
        if code == 2:
            return Admission("quota", meter=meter, used=float(result[2]))
        _seed(client, organisation, meter, period)
    raise RuntimeError("could not seed the quota counters")


def _seed(client, organisation, meter: str, period: str) -> None:
    used = (
        UsageCounter.objects.for_org(organisation)
        .filter(meter=meter, period=period)
        .values_list("used", flat=True)
        .first()
    )
    client.set(used_key(organisation, meter, period), str(used or 0), nx=True, ex=USED_TTL_S)


def release(*, organisation, charges: list[tuple[str, float, int]], period: str) -> None:
    """Give back what ``admit`` reserved for work that failed (the rate-limit hit stays, as in the API)."""
    pipe = redis_client().pipeline(transaction=False)
    for meter, quantity, _limit in charges:
        pipe.incrbyfloat(used_key(organisation, meter, period), -float(quantity))
    pipe.execute()


def counter_add(*, organisation, meter: str, period: str, quantity: Decimal) -> None:
    """A charge written straight to the database moves the Redis counter too (if it has started)."""
    if not enabled():
        return
    try:
        client = redis_client()
        _scripts["add"](keys=[used_key(organisation, meter, period)], args=[str(quantity)], client=client)
    except Exception:  # noqa: BLE001 - the database's counter is the record; Redis catches up at next seed
        log.warning("could not add to the Redis counter of %s", meter, exc_info=True)


@dataclass(frozen=True)
class Line:
    """One ledger line on its way to the database."""

    meter: str
    quantity: float
    metadata: dict[str, Any]


def ledger_append(*, organisation, api_key_id: int | None, request_id: str, lines: list[Line]) -> None:
    """Append a request's ledger lines to the stream (returns once Redis has them)."""
    pipe = redis_client().pipeline(transaction=False)
    at = datetime.now(UTC).isoformat()
    for index, line in enumerate(lines):
        fields = {
            "org": organisation.pk,
            "stamp": organisation_stamp(organisation),
            "meter": line.meter,
            "quantity": repr(float(line.quantity)),
            "key": f"req:{request_id}:{index}",
            "api_key": "" if api_key_id is None else api_key_id,
            "metadata": json.dumps(line.metadata, separators=(",", ":")),
            "at": at,
        }
        pipe.xadd(STREAM, fields)
    pipe.execute()


def new_request_id() -> str:
    return uuid.uuid4().hex


# --- the flusher ----------------------------------------------------------------------------------------


_group_ready = False


def _ensure_group(client) -> None:
    global _group_ready
    import redis

    if _group_ready:
        return
    try:
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    _group_ready = True


def _decode(fields: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in fields.items()}


def _write(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
    """Write a batch of stream entries into the ledger in one transaction; how many lines were new."""
    from core.billing.services import _add_to_counter, period_bounds
    from core.tenancy.models import Organisation

    rows = [_decode(fields) for _id, fields in entries]
    organisations = {o.pk: o for o in Organisation.objects.filter(pk__in={int(r["org"]) for r in rows})}
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
    with transaction.atomic():
        for org_id, org_rows in by_org.items():
            organisation = organisations[org_id]
            seen = set(
                UsageEvent.all_tenants.filter(
                    organisation_id=org_id, idempotency_key__in=[r["key"] for r in org_rows]
                ).values_list("idempotency_key", flat=True)
            )
            fresh = {r["key"]: r for r in org_rows if r["key"] not in seen}.values()
            UsageEvent.all_tenants.bulk_create(
                UsageEvent(
                    organisation_id=org_id,
                    meter=r["meter"],
                    quantity=Decimal(r["quantity"]),
                    idempotency_key=r["key"],
                    api_key_id=int(r["api_key"]) if r["api_key"] else None,
                    metadata=json.loads(r["metadata"]),
                )
                for r in fresh
            )
            totals: dict[tuple[str, datetime], Decimal] = defaultdict(Decimal)
            for r in fresh:
                start = period_bounds(datetime.fromisoformat(r["at"]))[0]
                totals[(r["meter"], start)] += Decimal(r["quantity"])
            for (meter, start), amount in totals.items():
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
    import redis

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


def ledger_drain(*, claim_idle_ms: int = 0) -> int:
    """Write every line in the stream, pending ones of any (dead) flusher included; lines written."""
    consumer = f"drain:{_consumer_name()}"
    client, total = redis_client(), 0
    _ensure_group(client)
    while True:
        read, new = ledger_flush_once(consumer=consumer, block_ms=None, claim_idle_ms=claim_idle_ms)
        total += new
        if not read:
            break
    client.xgroup_delconsumer(STREAM, GROUP, consumer)  # it has nothing pending: every read was written
    return total


_flusher: threading.Thread | None = None


def flusher_start() -> None:
    """Start this process's flusher thread (once)."""
    global _flusher
    with _lock:
        if _flusher is not None and _flusher.is_alive():
            return
        _flusher = threading.Thread(target=_flush_forever, name="ledger-flusher", daemon=True)
        _flusher.start()


def _flush_forever() -> None:
    consumer = _consumer_name()
    last_claim = 0.0
    while True:
        try:
            claim = None
            if time.monotonic() - last_claim > 5:
                claim, last_claim = CLAIM_IDLE_MS, time.monotonic()
            read, _new = ledger_flush_once(
                consumer=consumer, count=FLUSH_BATCH, block_ms=1000, claim_idle_ms=claim
            )
            if read < FLUSH_BATCH:  # let lines gather: a batch per interval, not a transaction per request
                time.sleep(FLUSH_INTERVAL_S)
        except Exception:  # noqa: BLE001 - keep flushing; the lines stay in the stream until written
            log.exception("ledger flush failed")
            close_old_connections()
            time.sleep(1)
