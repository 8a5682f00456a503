"""The registry of job kinds. Apps register a handler per kind at start-up.

A handler is ``fn(job, reporter) -> dict`` (the result stored on the job). It reports progress
through ``reporter.progress(...)`` which also raises ``JobCancelled`` once the job was cancelled.
A kind that takes something when it is started (a batch's predictions) registers ``release(job)``: it is
called once the job ends without succeeding (failed, cancelled, queued or running, or reaped) to give it back.
A kind may register ``describe(job) -> str``: what the job is doing, in a sentence for its page
(``core.jobs.describe``; kinds without one get a generic sentence).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JobKind:
    name: str
    queue: str  # one of core.jobs.queues.Queue
    handler: Callable[..., dict[str, Any]]
    metered: bool  # counts against the plan's training jobs
    release: Callable[[Any], None] | None = None
    describe: Callable[[Any], str] | None = None


_KINDS: dict[str, JobKind] = {}


def register_job_kind(
    name: str,
    *,
    queue: str,
    handler: Callable[..., dict[str, Any]],
    metered: bool,
    release: Callable[[Any], None] | None = None,
    describe: Callable[[Any], str] | None = None,
) -> None:
    _KINDS[name] = JobKind(
        name=name, queue=queue, handler=handler, metered=metered, release=release, describe=describe
    )


def job_kind(name: str) -> JobKind | None:
    return _KINDS.get(name)


def job_kinds() -> list[str]:
    return sorted(_KINDS)
