"""The registry of job kinds. Apps register a handler per kind at start-up.

A handler is ``fn(job, reporter) -> dict`` (the result stored on the job). It reports progress
through ``reporter.progress(...)`` which also raises ``JobCancelled`` once the job was cancelled.
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


_KINDS: dict[str, JobKind] = {}


def register_job_kind(
    name: str, *, queue: str, handler: Callable[..., dict[str, Any]], metered: bool
) -> None:
    _KINDS[name] = JobKind(name=name, queue=queue, handler=handler, metered=metered)


def job_kind(name: str) -> JobKind | None:
    return _KINDS.get(name)


def job_kinds() -> list[str]:
    return sorted(_KINDS)
