"""Websocket scenarios that cannot hang the test run.

``async_to_sync(scenario)()`` ends in ``asyncio.run``, which cancels every task still pending (a socket the
scenario left open, one the server refused, which still waits for its ``websocket.disconnect``) and then
waits for all of them without a limit. One CI run on the Redis channel layer hung there: the test failed
at pytest-timeout's 300 s and the stuck thread then held the interpreter's exit until CI's 90 minutes ran
out. So a scenario here runs under a time limit; every ``Socket`` it opened is disconnected as a browser
would (the consumer's own ``disconnect`` runs, its groups are left) before the loop ends, so nothing is
left to cancel; a task still waiting on a thread (a bot's answer being worked out) is let finish first, as
a cancel would not stop the thread (``_waits_on_a_thread``); and a task that still will not finish after a
cancel fails the test with its stack instead of hanging (it is handed to no one: ``asyncio.run`` no longer
sees it).
"""

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

T = TypeVar("T")

SCENARIO_TIMEOUT_S = 120.0
SETTLE_TIMEOUT_S = 10.0

_opened: contextvars.ContextVar[list["Socket"] | None] = contextvars.ContextVar("opened", default=None)


class Socket(WebsocketCommunicator):
    """A ``WebsocketCommunicator`` that ``run_sockets`` closes at the end of its scenario."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opened = _opened.get()
        if opened is not None:
            opened.append(self)


def _stacks(tasks) -> str:
    lines = []
    for task in tasks:
        lines.append(repr(task))
        for frame in task.get_stack():
            lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}")
    return "\n".join(lines)


def _waits_on_a_thread(task: asyncio.Task) -> bool:
    """Whether ``task`` awaits a sync function running in a thread (``sync_to_async``, as a consumer's
    ``database_sync_to_async`` work): a cancel ends the task but not the thread, and the thread's own
    ``async_to_sync`` calls back into this loop (a commit's broadcast) then wait for ever on a wrapper
    task that the closing loop cancelled before it ran: one such thread held a customer-service socket test
    and the interpreter's exit (``asyncio.run`` joins the loop's executor threads)."""
    coro: Any = task.get_coro()
    while coro is not None:
        code = getattr(coro, "cr_code", None)
        if code is not None and code.co_name == "__call__" and code.co_filename.endswith("asgiref/sync.py"):
            return True
        coro = getattr(coro, "cr_await", None)
    return False


async def _settle(opened: list[Socket]) -> None:
    for socket in opened:
        if not socket.future.done():
            # the consumer's own error, if any, was the scenario's to see
            with contextlib.suppress(Exception):
                await socket.disconnect(timeout=SETTLE_TIMEOUT_S)
    me = asyncio.current_task()
    left = [task for task in asyncio.all_tasks() if task is not me and not task.done()]
    threaded = [task for task in left if _waits_on_a_thread(task)]
    if threaded:  # let their threads finish while the loop still serves their calls back into it
        await asyncio.wait(threaded, timeout=SETTLE_TIMEOUT_S)
        left = [task for task in left if not task.done()]
    for task in left:
        task.cancel()
    if not left:
        return
    _, stubborn = await asyncio.wait(left, timeout=SETTLE_TIMEOUT_S)
    if stubborn:
        report = _stacks(stubborn)
        for task in stubborn:  # asyncio.run would wait for them without a limit
            asyncio.tasks._unregister_task(task)  # type: ignore[attr-defined]
            task._log_destroy_pending = False  # type: ignore[attr-defined] - reported here, with its stack
        raise AssertionError(f"{len(stubborn)} task(s) would not end after a cancel:\n{report}")


def run_sockets(scenario: Callable[[], Awaitable[T]], *, timeout: float = SCENARIO_TIMEOUT_S) -> T:
    """``scenario()`` to its end (within ``timeout`` seconds), then every ``Socket`` it opened closed."""

    async def run() -> T:
        opened: list[Socket] = []
        token = _opened.set(opened)
        try:
            return await asyncio.wait_for(scenario(), timeout)
        finally:
            _opened.reset(token)
            await _settle(opened)

    return async_to_sync(run)()
