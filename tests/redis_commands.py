"""Which Redis commands a piece of code sends: the tests that count a request's round trips."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis.client


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def redis_commands(counted: Callable[[], bool] = _main_thread) -> Iterator[list[str]]:
    """The names of the commands sent inside the block by the threads ``counted`` says (by default the
    test's own thread: a flusher thread's reads are not the request's), in order."""
    commands: list[str] = []
    original = redis.client.Redis.execute_command

    def counting(self, *args, **kwargs):
        if counted():
            commands.append(str(args[0]).upper())
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(redis.client.Redis, "execute_command", counting)
        yield commands
