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
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache

from core.billing.models import UsageCounter
from core.ratelimit import retry_after, slot_key

log = logging.getLogger(__name__)

STREAM = "billing:ledger"
GROUP = "ledger-flusher"
USED_TTL_S = 40 * 24 * 3600  # a period's counter outlives its month
CLAIM_IDLE_MS = 30_000  # a line read this long ago and not acknowledged belongs to a dead flusher
FLUSH_INTERVAL_S = 0.25  # the flusher writes what gathered in this long in one batch (one transaction)
FLUSH_BATCH = 2000

# One call admits every request that concurrent threads handed in meanwhile (``_Combiner``), each on its own
# terms and all or nothing for itself, in order. ARGV[1]: the number of requests; then per request: slot-key
# prefix, current slot, slots, requests per minute, slot TTL, the number of quota counters, limit and quantity
# per quota counter, the number of ledger fields (0: no ledger entry), then the ledger entry's field names and
# values. KEYS: per request its quota counters, then the stream (last). The rate-limit slot keys are built
# here from the prefix (one node); the past slots' total is read once per prefix and slot. Admitted, a
# request's entry is appended in the same step: its counters and ledger lines move together or not at all.
# A reply per request: {0, count} admitted; {1, count, past counts} rate limited; {2, j, used} quota j
# refused; {3, j} quota counter j not started (the caller seeds it from the database and asks again).
_ADMIT = """
local stream = KEYS[#KEYS]
local pasts = {}
local function admit_one(a, k)
  local prefix, current, n = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local rpm, ttl, nq = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local nf = tonumber(ARGV[a + 6 + 2 * nq])
  local f = a + 7 + 2 * nq
  local slot = prefix .. current
  local past = pasts[slot]
  if not past then
    local names = {}
    for i = 1, n do names[i] = prefix .. (current - n + i - 1) end
    past = redis.call('MGET', unpack(names))
    pasts[slot] = past
  end
  local total = 0
  for i = 1, n do
    if past[i] then total = total + tonumber(past[i]) end
  end
  local nxt = f + 2 * nf
  if rpm > 0 then
    local position = redis.call('INCR', slot)
    if position == 1 then redis.call('EXPIRE', slot, ttl) end
    if total + position > rpm then
      redis.call('DECR', slot)
      local counts = {}
      for i = 1, n do counts[i] = tonumber(past[i] or 0) end
      return {1, total + position - 1, counts}, nxt
    end
    for j = 1, nq do
      local used = redis.call('GET', KEYS[k + j - 1])
      if not used then
        redis.call('DECR', slot)
        return {3, j}, nxt
      end
      if tonumber(used) + tonumber(ARGV[a + 7 + 2 * (j - 1)]) > tonumber(ARGV[a + 6 + 2 * (j - 1)]) then
        return {2, j, used}, nxt
      end
    end
    for j = 1, nq do redis.call('INCRBYFLOAT', KEYS[k + j - 1], ARGV[a + 7 + 2 * (j - 1)]) end
    if nf > 0 then redis.call('XADD', stream, '*', unpack(ARGV, f, nxt - 1)) end
    return {0, total + position}, nxt
  end
  return {1, total}, nxt
end
local out = {}
local a, k = 2, 1
for r = 1, tonumber(ARGV[1]) do
  local reply, nxt = admit_one(a, k)
  out[r] = reply
  k = k + tonumber(ARGV[a + 5])
  a = nxt
end
return out
"""

_ADD_IF_PRESENT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCRBYFLOAT', KEYS[1], ARGV[1]) end
return false
"""

# A charge for work already done (``core.billing.streamed``): add to the period's counter and append the
# ledger entry in one step, or nothing when the counter has not started (the caller seeds it and asks again).
# KEYS[1]: the counter, KEYS[2]: the stream; ARGV[1]: the quantity, then the entry's field names and values.
_CHARGE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
return 1
"""

# Settling a reservation once the work is done: move the counter by what was used less what was reserved
# (unless the counter went meanwhile: it is seeded again from the database) and append the ledger entry, in
# one step. KEYS[1]: the counter, KEYS[2]: the stream; ARGV[1]: the difference, then the entry's fields.
_SETTLE = """
if tonumber(ARGV[1]) ~= 0 and redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
end
if #ARGV > 1 then redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2)) end
return 1
"""

# A reservation before the work (``core.billing.streamed``): take ``quantity`` of the period's counter only if
# it stays within the limit, so concurrent requests can never pass it; with the ledger entry of the reserved
# quantity appended in the same step (work whose charge is known before it runs:
# ``core.billing.streamed.metered_streamed(upfront=True)``) and other keys read too (a hot path's generation
# tokens, ``core.generations``), so that such a request makes one Redis call for its meter and its cached
# state. KEYS[1]: the counter, KEYS[2]: the stream, KEYS[3..]: the keys to read; ARGV: quantity, limit, then
# the entry's field names and values (none: no entry). {0, reads} taken; {2, used, reads} refused; {3, reads}
# the counter has not started (the caller seeds it and asks again); reads: the read keys' values (false for a
# missing key).
_TAKE = """
local reads = {}
if #KEYS > 2 then reads = redis.call('MGET', unpack(KEYS, 3)) end
local used = redis.call('GET', KEYS[1])
if not used then return {3, reads} end
if tonumber(used) + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return {2, used, reads} end
redis.call('INCRBYFLOAT', KEYS[1], ARGV[1])
if #ARGV > 2 then redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3)) end
return {0, reads}
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
            _scripts["charge"] = _client.register_script(_CHARGE)
            _scripts["settle"] = _client.register_script(_SETTLE)
            _scripts["take"] = _client.register_script(_TAKE)
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


class _Request:
    """One request's part of a combined admission call."""

    __slots__ = ("keys", "args", "reply", "error", "done", "lead")

    def __init__(self, keys: list[str], args: list[Any]) -> None:
        self.keys, self.args = keys, args
        self.reply: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.lead = False


class _Combiner:
    """Admits the requests of many threads in one Redis call (flat combining).

    A thread that finds no call in flight makes one for everything queued (its own request first) and, when
    it returns, hands the lead to the oldest request that queued meanwhile, whose thread makes the next call;
    the others wait for their reply. One thread alone pays one round trip as before; under concurrency the
    round trips, the syscalls and the script calls are shared. Each request is admitted on its own terms (the
    script takes them in order), so combining changes no answer.
    """

    MAX_BATCH = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Request] = []
        self._busy = False
        self.calls = 0  # script calls made, for tests

    def submit(self, request: _Request) -> Any:
        with self._lock:
            self._queue.append(request)
            lead = not self._busy
            self._busy = True
        if not lead:
            request.done.wait()
        if lead or request.lead:
            self._lead()
        if request.error is not None:
            raise request.error
        return request.reply

    def _lead(self) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self.MAX_BATCH], self._queue[self.MAX_BATCH :]
        try:
            replies = _call(batch)
            for request, reply in zip(batch, replies, strict=True):
                request.reply = reply
        except BaseException as exc:  # every request of the call gets the error (the caller falls back)
            for request in batch:
                request.error = exc
        finally:
            with self._lock:
                successor = self._queue[0] if self._queue else None
                self._busy = successor is not None
            for request in batch:
                request.done.set()
            if successor is not None:
                successor.lead = True
                successor.done.set()


def _call(batch: list[_Request]) -> list[Any]:
    client = redis_client()
    keys = [key for request in batch for key in request.keys]
    keys.append(STREAM)
    args: list[Any] = [len(batch)]
    for request in batch:
        args += request.args
    _combiner.calls += 1
    return _scripts["admit"](keys=keys, args=args, client=client)


_combiner = _Combiner()


def admit(
    *,
    organisation,
    rate_key: str,
    requests_per_minute: int,
    charges: list[tuple[str, float, int]],  # (meter, quantity, limit)
    period: str,
    ledger: "LedgerEntry | None" = None,
    now: float | None = None,
) -> Admission:
    """Count one hit on ``rate_key`` and reserve every charge, or refuse with the reason (nothing kept).

    With ``ledger``, the request's ledger lines are appended to the stream in the same script when it is
    admitted (the hot path runs the work first and then admits and records it in one Redis call, shared
    with the requests other threads admit at the same time: ``_Combiner``).
    The rate-limit counters are ``core.ratelimit``'s (60 one-second slots, keys made by the cache), so the
    full stack and the hot path share one limit per key.
    """
    now = time.time() if now is None else now
    window, slots = 60.0, 60
    width = window / slots
    current = math.floor(now / width)
    prefix = _slot_prefix(rate_key, current)
    keys = [used_key(organisation, meter, period) for meter, _q, _l in charges]
    args: list[Any] = [prefix, current, slots, requests_per_minute, int(window + 2 * width), len(charges)]
    for _meter, quantity, limit in charges:
        args += [limit, repr(float(quantity))]
    fields = ledger.fields(organisation) if ledger is not None else {}
    args.append(len(fields))
    for name, value in fields.items():
        args += [name, value]
    for _attempt in range(3):
        result = _combiner.submit(_Request(keys, args))
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
        _seed(redis_client(), organisation, meter, period)
    raise RuntimeError("could not seed the quota counters")


_prefixes: dict[tuple[str, int], str] = {}


def _slot_prefix(rate_key: str, current: int) -> str:
    """The cache's name of ``rate_key``'s slot ``current`` less the slot number (made once per key and slot:
    the cache's key function is the same for every slot)."""
    hit = _prefixes.get((rate_key, current))
    if hit is None:
        if len(_prefixes) > 10_000:
            _prefixes.clear()
        hit = cache.make_key(slot_key(rate_key, current))[: -len(str(current))]
        _prefixes[(rate_key, current)] = hit
    return hit


def _seed(client, organisation, meter: str, period: str) -> None:
    used = (
        UsageCounter.objects.for_org(organisation)
        .filter(meter=meter, period=period)
        .values_list("used", flat=True)
        .first()
    )
    client.set(used_key(organisation, meter, period), str(used or 0), nx=True, ex=USED_TTL_S)


def used(*, organisation, meter: str, period: str) -> float:
    """The period's use of ``meter`` as Redis counts it (started from the database's counter if need be)."""
    client = redis_client()
    value = client.get(used_key(organisation, meter, period))
    if value is None:
        _seed(client, organisation, meter, period)
        value = client.get(used_key(organisation, meter, period))
    return float(value or 0)


def charge(*, organisation, meter: str, quantity: float, period: str, ledger: "LedgerEntry") -> None:
    """Add ``quantity`` to the period's Redis counter and append the ledger entry, together."""
    client = redis_client()
    fields = ledger.fields(organisation)
    args: list[Any] = [repr(float(quantity))]
    for name, value in fields.items():
        args += [name, value]
    keys = [used_key(organisation, meter, period), STREAM]
    for _attempt in range(3):
        if int(_scripts["charge"](keys=keys, args=args, client=client)):
            return
        _seed(client, organisation, meter, period)
    raise RuntimeError("could not seed the quota counter")


def reserve(*, organisation, meter: str, quantity: float, limit: float, period: str) -> float | None:
    """Take ``quantity`` of the period's counter if the limit allows it: None when taken, else the use that
    refused it. ``settle`` ends every reservation."""
    taken = take(organisation=organisation, meter=meter, quantity=quantity, limit=limit, period=period)
    return taken.refused_at


@dataclass(frozen=True)
class Taken:
    """What ``take`` did: ``refused_at`` None when the quantity was taken (else the use that refused it), and
    the values of the keys it was asked to read, in their order, as ``MGET`` gives them (bytes; None for a
    missing key)."""

    refused_at: float | None
    values: list[bytes | None]


def take(
    *,
    organisation,
    meter: str,
    quantity: float,
    limit: float,
    period: str,
    ledger: "LedgerEntry | None" = None,
    read: list[str] | tuple[str, ...] = (),
) -> Taken:
    """``reserve``, with ``ledger`` (the reserved quantity's entry) appended when the quantity is taken and
    the keys ``read`` read, in the same Redis call. A taken quantity with its entry is charged: work that
    then uses another quantity corrects it with ``settle`` and an entry of the difference."""
    client = redis_client()
    keys = [used_key(organisation, meter, period), STREAM, *read]
    args: list[Any] = [repr(float(quantity)), repr(float(limit))]
    if ledger is not None:
        for name, value in ledger.fields(organisation).items():
            args += [name, value]
    for _attempt in range(3):
        reply = _scripts["take"](keys=keys, args=args, client=client)
        status, values = int(reply[0]), list(reply[-1])
        if status == 0:
            return Taken(None, values)
        if status == 2:
            return Taken(float(reply[1]), values)
        _seed(client, organisation, meter, period)
    raise RuntimeError("could not seed the quota counter")


def settle(
    *, organisation, meter: str, reserved: float, used: float, period: str, ledger: "LedgerEntry | None"
) -> None:
    """End a reservation: the counter moves by ``used - reserved`` and the ledger entry (if any) is appended,
    together."""
    args: list[Any] = [repr(float(used) - float(reserved))]
    if ledger is not None:
        for name, value in ledger.fields(organisation).items():
            args += [name, value]
    keys = [used_key(organisation, meter, period), STREAM]
    _scripts["settle"](keys=keys, args=args, client=redis_client())


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


@dataclass(frozen=True)
class LedgerEntry:
    """A request's ledger lines as one stream entry; the flusher writes line ``i`` under the idempotency key
    ``req:<request id>:<i>``."""

    api_key_id: int | None
    request_id: str
    lines: list[Line]

    def fields(self, organisation) -> dict[str, Any]:
        return {
            "org": organisation.pk,
            "stamp": organisation_stamp(organisation),
            "key": f"req:{self.request_id}",
            "api_key": "" if self.api_key_id is None else self.api_key_id,
            "lines": json.dumps(
                [[line.meter, float(line.quantity), line.metadata] for line in self.lines],
                separators=(",", ":"),
            ),
            "at": datetime.now(UTC).isoformat(),
        }


def ledger_append(*, organisation, api_key_id: int | None, request_id: str, lines: list[Line]) -> None:
    """Append a request's ledger lines to the stream as one entry (returns once Redis has it)."""
    entry = LedgerEntry(api_key_id=api_key_id, request_id=request_id, lines=lines)
    redis_client().xadd(STREAM, entry.fields(organisation))  # type: ignore[arg-type]


def new_request_id() -> str:
    return uuid.uuid4().hex


# --- the flusher ----------------------------------------------------------------------------------------
