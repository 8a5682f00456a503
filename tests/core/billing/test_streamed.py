"""``core.billing.streamed.metered_streamed``: a metered charge through Redis and the ledger stream."""

import time

import pytest
from django.conf import settings

from core.billing import deferred, flusher, streamed
from core.billing import services as billing
from core.billing.models import Plan, PlanLimit, UsageEvent
from core.errors import QuotaExceeded
from tests.redis_commands import redis_commands

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="the ledger stream lives in Redis (REDIS_URL)"),
]

METER = "predictions"
FLUSH_WAIT_S = 3 * deferred.FLUSH_INTERVAL_S  # longer than a flusher thread would take to write a line


def _lines(org) -> list[UsageEvent]:
    flusher.ledger_drain()
    return list(UsageEvent.objects.for_org(org).filter(meter=METER))


def test_a_streamed_charge_reaches_the_ledger_and_the_counter_once(make_org, make_key):
    org, _ = make_org()
    key, _secret = make_key(org, scopes=["predict"])
    assert deferred.enabled()
    result = streamed.metered_streamed(
        lambda: "done", organisation=org, meter=METER, quantity=3, api_key=key, metadata={"model_version": 7}
    )
    assert result == "done"
    (line,) = _lines(org)
    assert line.quantity == 3 and line.api_key_id == key.pk and line.metadata == {"model_version": 7}
    assert line.idempotency_key.startswith("req:")
    assert billing.period_used(organisation=org, meter=METER) == 3
    # a Charge of another quantity (0: nothing), and work that fails, charge only what was used
    streamed.metered_streamed(lambda: billing.Charge("x", quantity=0), organisation=org, meter=METER)
    with pytest.raises(RuntimeError):
        streamed.metered_streamed(
            lambda: (_ for _ in ()).throw(RuntimeError("boom")), organisation=org, meter=METER
        )
    streamed.metered_streamed(lambda: billing.Charge("y", quantity=2), organisation=org, meter=METER)
    assert sorted(line.quantity for line in _lines(org)) == [2, 3]
    assert billing.period_used(organisation=org, meter=METER) == 5


def test_the_quota_counts_database_charges_and_refuses_with_the_full_stacks_message(make_org):
    org, _ = make_org()
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id=METER, defaults={"limit": 4})
    billing.usage_record(organisation=org, meter=METER, quantity=2)  # through the database, before Redis
    ran = []
    streamed.metered_streamed(lambda: ran.append(1), organisation=org, meter=METER, quantity=2)
    with pytest.raises(QuotaExceeded) as streamed_refusal:
        streamed.metered_streamed(lambda: ran.append(2), organisation=org, meter=METER)
    assert ran == [1]  # the refused work did not run
    _lines(org)
    with pytest.raises(QuotaExceeded) as database_refusal:
        billing.quota_check(organisation=org, meter=METER)
    assert str(streamed_refusal.value) == str(database_refusal.value)
    assert streamed_refusal.value.details == database_refusal.value.details
    # a charge written to the database later moves the Redis counter too: one unit freed is one unit usable
    PlanLimit.objects.filter(plan=trial, meter_id=METER).update(limit=6)
    org._subscription = None  # the next request's organisation instance reads the plan again
    billing.usage_record(organisation=org, meter=METER, quantity=1)
    streamed.metered_streamed(lambda: ran.append(3), organisation=org, meter=METER)
    with pytest.raises(QuotaExceeded):
        streamed.metered_streamed(lambda: ran.append(4), organisation=org, meter=METER)
    assert ran == [1, 3]
    _lines(org)
    assert billing.period_used(organisation=org, meter=METER) == 6


def test_a_stopped_flusher_ends_and_the_next_charge_starts_one_that_writes_it(make_org):
    """The flusher thread stops between batches (the tests stop it before the database is emptied, with which
    its writes deadlock); a later charge starts a new one, which writes the line without a drain."""
    from tests.worker import wait_for

    org, _ = make_org()
    flusher.ledger_drain()
    flusher.flusher_start()
    thread = flusher._flusher
    flusher.flusher_stop(timeout=30)
    assert thread is not None and not thread.is_alive()
    streamed.metered_streamed(lambda: "served", organisation=org, meter=METER, quantity=4)
    assert flusher._flusher is not None and flusher._flusher.is_alive()
    wait_for(lambda: UsageEvent.objects.for_org(org).filter(meter=METER, quantity=4).exists(), timeout=30)
    flusher.flusher_stop(timeout=30)


def test_requests_served_at_the_same_moment_never_pass_the_limit_together(make_org):
    """The quantity is reserved with the limit's check in one Redis step before the work runs: of 24 requests
    released at once against a limit of 5, exactly 5 run and are charged (checked, then charged after the
    work, several passed together: 9 of 5 in the audit)."""
    import threading

    from django.db import connection

    org, _ = make_org()
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id=METER, defaults={"limit": 5})
    billing.subscription_for(organisation=org).plan.limits()  # the threads read nothing more of the plan
    barrier, ran, refused = threading.Barrier(24), [], []

    def request(i: int) -> None:
        try:
            barrier.wait()

            def work():
                time.sleep(0.05)  # the work takes a while, as a ranking does: others arrive meanwhile
                ran.append(i)

            streamed.metered_streamed(work, organisation=org, meter=METER)
        except QuotaExceeded:
            refused.append(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=request, args=(i,)) for i in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ran) == 5 and len(refused) == 19
    assert len(_lines(org)) == 5
    assert billing.period_used(organisation=org, meter=METER) == 5
    assert deferred.used(organisation=org, meter=METER, period=billing.period_bounds()[2]) == 5
    # work that fails gives its reservation back: the next request runs
    PlanLimit.objects.filter(plan=trial, meter_id=METER).update(limit=6)
    org._subscription = None
    with pytest.raises(RuntimeError):
        streamed.metered_streamed(
            lambda: (_ for _ in ()).throw(RuntimeError("boom")), organisation=org, meter=METER
        )
    assert streamed.metered_streamed(lambda: "ran", organisation=org, meter=METER) == "ran"


def test_with_a_flusher_process_the_charging_process_starts_no_thread_and_the_process_writes_its_lines(
    make_org, settings
):
    """``LEDGER_FLUSHER=process``: a process that charges leaves its lines to ``manage.py flush_ledger
    --follow``, which writes them as they come and ends on SIGTERM after its batch."""
    import os
    import signal
    import subprocess
    import sys

    from tests.worker import ROOT, _database_url, wait_for

    org, _ = make_org()
    flusher.ledger_drain()
    flusher.flusher_stop(timeout=30)
    settings.LEDGER_FLUSHER = "process"
    streamed.metered_streamed(lambda: "served", organisation=org, meter=METER, quantity=5)
    assert flusher._flusher is None  # no thread of this process writes the line
    time.sleep(FLUSH_WAIT_S)
    assert not UsageEvent.objects.for_org(org).filter(meter=METER).exists()
    env = {**os.environ, "DATABASE_URL": _database_url(), "LEDGER_FLUSHER": "process"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "flush_ledger", "--follow"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: UsageEvent.objects.for_org(org).filter(meter=METER, quantity=5).exists(), timeout=60)
        streamed.metered_streamed(lambda: "again", organisation=org, meter=METER, quantity=6)  # while it runs
        wait_for(lambda: UsageEvent.objects.for_org(org).filter(meter=METER, quantity=6).exists(), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert "Writing ledger lines as they come" in out
    assert sorted(line.quantity for line in _lines(org)) == [5, 6]  # each once
    assert billing.period_used(organisation=org, meter=METER) == 11


def test_an_upfront_charge_is_one_redis_call_and_a_correction_line_when_the_work_used_another_quantity(
    make_org, make_key
):
    """``upfront=True``: the ledger line of the reserved quantity is appended by the reserving call itself
    (one Redis call, nothing to settle after the work); work that raises, or charges another quantity, is
    corrected by a line of the difference: the ledger and the counter say what was used."""
    org, _ = make_org()
    key, _secret = make_key(org, scopes=["predict"])
    period = billing.period_bounds()[2]
    streamed.metered_streamed(lambda: "warm", organisation=org, meter=METER, upfront=True)  # seeds it
    with redis_commands() as commands:
        result = streamed.metered_streamed(
            lambda: "done",
            organisation=org,
            meter=METER,
            quantity=3,
            api_key=key,
            metadata={"v": 7},
            upfront=True,
        )
    assert result == "done" and commands == ["EVALSHA"], commands
    with pytest.raises(RuntimeError):
        streamed.metered_streamed(
            lambda: (_ for _ in ()).throw(RuntimeError("boom")), organisation=org, meter=METER, upfront=True
        )
    streamed.metered_streamed(
        lambda: billing.Charge("y", quantity=2.5, metadata={"why": "more"}),
        organisation=org,
        meter=METER,
        upfront=True,
    )
    lines = sorted(_lines(org), key=lambda line: line.pk)
    assert [float(line.quantity) for line in lines] == [1, 3, 1, -1, 1, 1.5]
    assert lines[1].metadata == {"v": 7} and lines[1].api_key_id == key.pk
    assert lines[3].metadata == {"correction": "the work failed"}
    assert lines[5].metadata == {"why": "more", "correction": "the work used another quantity"}
    assert billing.period_used(organisation=org, meter=METER) == 6.5
    assert deferred.used(organisation=org, meter=METER, period=period) == 6.5


def test_an_upfront_charge_past_the_limit_is_refused_before_the_work_and_appends_nothing(make_org):
    org, _ = make_org()
    trial = Plan.objects.get(code="trial")
    PlanLimit.objects.update_or_create(plan=trial, meter_id=METER, defaults={"limit": 2})
    ran = []
    streamed.metered_streamed(lambda: ran.append(1), organisation=org, meter=METER, quantity=2, upfront=True)
    with pytest.raises(QuotaExceeded) as refusal:
        streamed.metered_streamed(lambda: ran.append(2), organisation=org, meter=METER, upfront=True)
    assert ran == [1] and refusal.value.details["used"] == 2
    assert [line.quantity for line in _lines(org)] == [2]


def test_prefetched_generation_tokens_are_read_with_the_reservation_and_serve_the_cache(
    make_org, monkeypatch
):
    """``prefetch``: the caches' tokens come from the reserving call; inside the work a cache reads no token
    of its own, keeps its value while they hold and loads again after a bump, as with its own read."""
    from django.db import transaction

    from core import generations

    org, _ = make_org()
    cache: generations.GenerationCache[int] = generations.GenerationCache("test-prefetch")
    loads: list[int] = []

    def load() -> int:
        loads.append(1)
        return len(loads)

    def mget_refused(*args, **kwargs):
        raise AssertionError("the tokens were read again")

    def work() -> int:
        client = deferred.redis_client()
        monkeypatch.setattr(client, "mget", mget_refused)
        try:
            return cache.get(org, load)
        finally:
            monkeypatch.undo()

    def served() -> int:
        return streamed.metered_streamed(work, organisation=org, meter=METER, upfront=True, prefetch=(cache,))

    assert served() == 1 and served() == 1 and loads == [1]
    with transaction.atomic():
        generations.bump(organisation=org, scope="test-prefetch")
    assert served() == 2 and served() == 2
    assert cache.get(org, load) == 2  # the cache's own read agrees with what the reservation read
