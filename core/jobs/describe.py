"""What a job is doing, in one sentence for people: its page and the live updates say this, not raw fields.

A job kind may register its own ``describe(job)`` (``core.jobs.handlers``); the others get the generic
sentence here, from the job's status, message and error.
"""

from core.jobs.handlers import job_kind
from core.jobs.models import JobStatus, TrainingJob


def generic_sentence(job: TrainingJob) -> str:
    if job.status == JobStatus.QUEUED:
        return "Waiting for a free worker to start it."
    if job.status == JobStatus.RUNNING:
        return f"Running: {job.message}." if job.message else "Running."
    if job.status == JobStatus.SUCCEEDED:
        return f"Finished: {job.message}." if job.message else "Finished."
    if job.status == JobStatus.FAILED:
        return f"Failed: {job.error or 'no reason was recorded.'}"
    return "Cancelled before it finished."


def job_sentence(job: TrainingJob) -> str:
    """The kind's sentence, or the generic one (also when the kind's describer cannot read this job)."""
    spec = job_kind(job.kind)
    if spec is not None and spec.describe is not None:
        try:
            return spec.describe(job)
        except (KeyError, TypeError, ValueError, AttributeError):
            pass  # an old or odd row: the generic sentence still says where it stands
    return generic_sentence(job)
