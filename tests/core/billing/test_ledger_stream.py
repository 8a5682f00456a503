"""The hot path's ledger stream (core.billing.deferred -> core.billing.flusher) against the real Redis."""

import json
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection

from core.billing import deferred, flusher, services
from core.billing.meters import Meter
from core.billing.models import UsageEvent


def _drained(org, expected: int, wait_s: float = 10) -> list:
    """The organisation's ledger once ``expected`` lines are there (or after ``wait_s``): this drain writes
    what is in the stream while this process's flusher thread may be writing some of it at the same time."""
    deadline = time.monotonic() + wait_s
    while True:
        flusher.ledger_drain()
        lines = list(UsageEvent.objects.for_org(org).order_by("idempotency_key"))
        if len(lines) >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="the ledger stream lives in Redis (REDIS_URL)"),
]


def test_a_request_entry_becomes_one_line_per_meter_once(make_org, make_key):
    org, _ = make_org()
    key, _secret = make_key(org, scopes=["predict"])
    flusher.ledger_drain()  # whatever an earlier test left
    flusher.flusher_start()  # as in a web process: the thread and the drains below read the stream together
    for request_id in ("a" * 32, "b" * 32):
        deferred.ledger_append(
            organisation=org,
            api_key_id=key.pk,
            request_id=request_id,
            lines=[
                deferred.Line(Meter.PREDICTIONS, 3, {"model_version": 7}),
                deferred.Line(Meter.API_CALLS, 1, {"method": "POST", "status": 200}),
            ],
        )
    lines = _drained(org, 4)
    assert [(e.idempotency_key, e.meter, e.quantity) for e in lines] == [
        (f"req:{'a' * 32}:0", "predictions", Decimal(3)),
        (f"req:{'a' * 32}:1", "api_calls", Decimal(1)),
        (f"req:{'b' * 32}:0", "predictions", Decimal(3)),
        (f"req:{'b' * 32}:1", "api_calls", Decimal(1)),
    ]
    assert lines[0].metadata == {"model_version": 7} and lines[0].api_key_id == key.pk
    assert lines[0].created_at is not None and lines[0].updated_at is not None
    assert services.period_used(organisation=org, meter=Meter.PREDICTIONS) == 6
    # the same entry again (a flusher that died after writing, before acknowledging) counts nothing twice
    deferred.ledger_append(
        organisation=org,
        api_key_id=key.pk,
        request_id="a" * 32,
        lines=[deferred.Line(Meter.PREDICTIONS, 3, {"model_version": 7})],
    )
    assert len(_drained(org, 5, wait_s=1.5)) == 4  # a fifth line must not come
    assert services.period_used(organisation=org, meter=Meter.PREDICTIONS) == 6


def test_an_entry_written_one_line_per_entry_before_the_change_is_still_written(make_org):
    org, _ = make_org()
    flusher.ledger_drain()
    deferred.redis_client().xadd(
        deferred.STREAM,
        {
            "org": org.pk,
            "stamp": deferred.organisation_stamp(org),
            "meter": str(Meter.PREDICTIONS),
            "quantity": "2.0",
            "key": "req:old:0",
            "api_key": "",
            "metadata": json.dumps({"model_version": 1}),
            "at": datetime.now(UTC).isoformat(),
        },
    )
    (line,) = _drained(org, 1)
    assert (line.idempotency_key, line.quantity, line.api_key_id) == ("req:old:0", Decimal(2), None)
    assert services.period_used(organisation=org, meter=Meter.PREDICTIONS) == 2


def test_concurrent_admissions_share_redis_calls_and_never_pass_a_limit(make_org, make_key):
    """Threads admitting at once are combined into shared script calls, each request on its own terms: a
    quota of 50 admits exactly 50 requests out of 160 (each with its ledger entry), a rate limit of 30 a
    minute exactly 30."""
    import threading

    from django.db import connection

    org, _ = make_org()
    key, _secret = make_key(org, scopes=["predict"])
    flusher.ledger_drain()
    period = services.period_bounds()[2]
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(rate_key: str, rpm: int, limit: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        for _ in range(10):
            admission = deferred.admit(
                organisation=org,
                rate_key=rate_key,
                requests_per_minute=rpm,
                charges=[(str(Meter.PREDICTIONS), 1.0, limit)],
                period=period,
                ledger=deferred.LedgerEntry(
                    api_key_id=key.pk,
                    request_id=deferred.new_request_id(),
                    lines=[deferred.Line(Meter.PREDICTIONS, 1, {"model_version": 1})],
                ),
            )
            with lock:
                outcomes.append(admission.status)
        connection.close()  # a thread that seeded a counter read the database on its own connection

    def burst(rate_key: str, rpm: int, limit: int) -> None:
        barrier = threading.Barrier(16)
        threads = [threading.Thread(target=run, args=(rate_key, rpm, limit, barrier)) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    calls = deferred._combiner.calls
    burst(f"api-key:quota-{deferred.new_request_id()}", 10_000, 50)
    assert outcomes.count("ok") == 50 and outcomes.count("quota") == 110
    assert deferred._combiner.calls - calls < 160  # some requests shared a call
    outcomes.clear()
    burst(f"api-key:rate-{deferred.new_request_id()}", 30, 10_000)
    assert outcomes.count("ok") == 30 and outcomes.count("rate_limited") == 130
    lines = _drained(org, 80)
    assert len(lines) == 80 and len({e.idempotency_key for e in lines}) == 80
    assert services.period_used(organisation=org, meter=Meter.PREDICTIONS) == 80


def test_a_drain_returns_only_once_lines_another_flusher_took_are_written(make_org, make_key):
    """A flusher (this process's thread or another web process) may take the stream's lines between a drain's
    claim and its read; the drain must not return, as if the stream were empty, before they are written."""
    org, _ = make_org()
    key, _secret = make_key(org, scopes=["predict"])
    flusher.ledger_drain()  # whatever an earlier test left
    # Another flusher reads both lines as they are appended (one Redis transaction: this process's flusher
    # thread, blocked on the stream, cannot take them first) and writes them 0.5 s later; a drain that may not
    # claim them (they are not idle long enough) has to wait for that write.
    client = deferred.redis_client()
    pipe = client.pipeline(transaction=True)
    for request_id in ("c" * 32, "d" * 32):
        entry = deferred.LedgerEntry(
            api_key_id=key.pk,
            request_id=request_id,
            lines=[deferred.Line(Meter.PREDICTIONS, 1, {"model_version": 7})],
        )
        pipe.xadd(deferred.STREAM, entry.fields(org))
    pipe.xreadgroup(deferred.GROUP, "slow-flusher", {deferred.STREAM: ">"}, count=100)
    taken = pipe.execute()[-1]
    assert [fields[b"org"] for _id, fields in taken[0][1]] == [str(org.pk).encode()] * 2

    def slow() -> None:
        time.sleep(0.5)
        try:
            flusher.ledger_flush_once(consumer="slow-flusher", block_ms=None)  # its own pending lines
        finally:
            connection.close()

    writer = threading.Thread(target=slow)
    writer.start()
    try:
        flusher.ledger_drain(claim_idle_ms=60_000)
        written = UsageEvent.objects.for_org(org).filter(meter="predictions").count()
    finally:
        writer.join()
    assert written == 2
    assert client.xlen(deferred.STREAM) == 0


def test_two_flushers_adding_the_same_meters_in_opposite_orders_do_not_deadlock(make_org, monkeypatch):
    """Two web processes' flushers write batches of the same organisation at once; each adds to the meters'
    counters in its batch's order unless the writer orders them. Each thread here waits after its first
    counter update until the other has made its own, so opposite orders lock the two rows crosswise."""
    org, _ = make_org()

    def entry(meters: list[str]) -> tuple[bytes, dict[bytes, bytes]]:
        lines = [deferred.Line(meter, 1, {}) for meter in meters]
        fields = deferred.LedgerEntry(api_key_id=None, request_id=deferred.new_request_id(), lines=lines)
        return b"0-0", {k.encode(): str(v).encode() for k, v in fields.fields(org).items()}

    flusher._write([entry([Meter.API_CALLS, Meter.PREDICTIONS])])  # both counters exist
    first_done = [threading.Event(), threading.Event()]
    local = threading.local()
    real = flusher._add_to_counter

    def add_then_wait(organisation, meter, amount, when, *, enforce):
        real(organisation, meter, amount, when, enforce=enforce)
        if not getattr(local, "waited", False):
            local.waited = True
            first_done[local.index].set()
            first_done[1 - local.index].wait(1.0)  # the other's first update, unless it is blocked on ours

    monkeypatch.setattr(flusher, "_add_to_counter", add_then_wait)
    errors: list[BaseException] = []

    def run(index: int, meters: list[str]) -> None:
        local.index = index
        try:
            flusher._write([entry(meters)])
        except BaseException as exc:  # noqa: BLE001 - the deadlock's OperationalError
            errors.append(exc)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=(0, [Meter.API_CALLS, Meter.PREDICTIONS])),
        threading.Thread(target=run, args=(1, [Meter.PREDICTIONS, Meter.API_CALLS])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    period = services.period_bounds()[2]
    for meter in (Meter.API_CALLS, Meter.PREDICTIONS):
        assert services.period_used(organisation=org, meter=meter, period=period) == 3


def test_a_following_flusher_takes_over_lines_after_the_idle_time_it_is_given(make_org, make_key):
    """``flush_ledger --follow --claim-idle-ms N`` (``flush_forever``): lines a dead flusher read and never
    wrote are written once they have been idle N ms, not only after the default 30 s."""
    org, _ = make_org()
    key, _secret = make_key(org, scopes=["predict"])
    flusher.ledger_drain()  # whatever an earlier test left
    client = deferred.redis_client()
    pipe = client.pipeline(transaction=True)
    entry = deferred.LedgerEntry(
        api_key_id=key.pk,
        request_id="e" * 32,
        lines=[deferred.Line(Meter.PREDICTIONS, 4, {"model_version": 7})],
    )
    pipe.xadd(deferred.STREAM, entry.fields(org))
    pipe.xreadgroup(deferred.GROUP, "dead-flusher", {deferred.STREAM: ">"}, count=100)
    assert pipe.execute()[-1]  # read by a flusher that then died: pending, never written
    stop = threading.Event()

    def follow() -> None:
        try:
            flusher.flush_forever(stop, claim_idle_ms=0)
        finally:
            connection.close()

    follower = threading.Thread(target=follow)
    follower.start()
    try:
        deadline = time.monotonic() + 10  # well before the default idle time (30 s) would let it claim
        while time.monotonic() < deadline and not UsageEvent.objects.for_org(org).exists():
            time.sleep(0.1)
    finally:
        stop.set()
        follower.join(30)
    assert [(line.meter, line.quantity) for line in UsageEvent.objects.for_org(org)] == [("predictions", 4)]
    assert deferred.CLAIM_IDLE_MS > 10_000


def test_a_drain_ends_cleanly_when_the_stream_went_meanwhile():
    """The Redis database emptied between a drain's reads and its goodbye to the group (a ``cache.clear()``,
    a Redis restart without persistence): the drain ends, and the next read makes the group again."""
    client = deferred.redis_client()
    flusher.ledger_drain()
    client.delete(deferred.STREAM)
    flusher._consumer_forget(client, "drain:gone")  # raised "requires the key to exist" before
    assert flusher._group_ready is False
    flusher.ledger_drain()  # makes the stream and the group again
    assert client.exists(deferred.STREAM)


def test_following_stops_on_sigterm_without_waiting_on_itself(monkeypatch):
    """``flush_ledger --follow`` ends on SIGTERM: the flusher waits on its stop event in a thread of its own,
    so the signal handler (which Python runs on the main thread) never sets the event from inside that
    event's own wait, where it once waited for itself forever; earlier signal handlers are put back."""
    import signal

    from core.billing.management.commands import flush_ledger

    seen: dict[str, object] = {}

    def flush_forever(stop: threading.Event, *, claim_idle_ms: int) -> None:
        seen["main thread"] = threading.current_thread() is threading.main_thread()
        seen["claim"] = claim_idle_ms
        threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGTERM)).start()
        assert stop.wait(10)  # set by the handler, on another thread than this one

    monkeypatch.setattr(flusher, "flush_forever", flush_forever)
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    flush_ledger.follow(claim_idle_ms=1234)
    assert seen == {"main thread": False, "claim": 1234} and time.monotonic() - started < 5
    assert signal.getsignal(signal.SIGTERM) is before
