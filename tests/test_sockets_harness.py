"""tests/sockets.py: a websocket scenario's sockets are closed as a browser would close them, and a task that
will not end after a cancel fails the test with its stack instead of hanging the run."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from core.asgi import application
from core.realtime import org_group
from tests import sockets
from tests.core.test_consumers import _headers
from tests.sockets import Socket, run_sockets


@pytest.mark.django_db(transaction=True)
def test_sockets_left_open_or_refused_are_closed_and_leave_their_group(make_org):
    organisation, owner = make_org()
    layer_group = org_group(organisation.pk, "jobs")

    async def scenario():
        left_open = Socket(application, "/ws/jobs/", headers=await sync_to_async(_headers)(owner))
        assert (await left_open.connect())[0]
        refused = Socket(application, "/ws/jobs/", headers=[(b"origin", b"http://localhost")])
        assert (await refused.connect()) == (False, 4401)
        assert not refused.future.done()  # a refused consumer still waits for its websocket.disconnect
        return left_open, refused

    left_open, refused = run_sockets(scenario)
    assert left_open.future.done() and not left_open.future.cancelled()  # ended by its disconnect
    assert refused.future.done() and not refused.future.cancelled()
    if "Redis" in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        from channels.layers import get_channel_layer
        from redis import Redis

        layer = get_channel_layer()
        members = Redis.from_url(settings.REDIS_URL).zcard(layer._group_key(layer_group))
        assert members == 0  # the consumer's own disconnect left the group


def test_a_task_that_ignores_its_cancel_fails_the_scenario_instead_of_hanging(monkeypatch):
    monkeypatch.setattr(sockets, "SETTLE_TIMEOUT_S", 0.5)
    release = asyncio.Event()

    async def stubborn_worker():
        while not release.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                continue  # swallows every cancel

    async def scenario():
        asyncio.ensure_future(stubborn_worker())
        await asyncio.sleep(0)

    stuck = r"1 task\(s\) would not end after a cancel:[\s\S]*stubborn_worker"
    with pytest.raises(AssertionError, match=stuck):
        run_sockets(scenario)


def test_a_scenario_that_never_ends_is_stopped_at_its_time_limit():
    async def scenario():
        await asyncio.Event().wait()

    with pytest.raises(TimeoutError):
        run_sockets(scenario, timeout=0.5)


def test_a_task_waiting_on_a_thread_is_let_finish_not_cancelled():
    """A consumer's ``database_sync_to_async`` work left running by the scenario (a bot's answer) ends with
    its thread; cancelled, its thread would go on and call back into a closing loop
    (``_waits_on_a_thread``)."""
    calls = []

    def work() -> str:
        import time

        time.sleep(0.3)  # the scenario has ended by now
        calls.append("called back")
        return "answered"

    async def scenario():
        task = asyncio.ensure_future(sync_to_async(work, thread_sensitive=False)())
        await asyncio.sleep(0)
        return task

    task = run_sockets(scenario)
    assert task.done() and not task.cancelled() and task.result() == "answered"
    assert calls == ["called back"]
