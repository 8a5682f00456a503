"""Celery shells for jobs: ids in, one service call, nothing else."""

from celery import shared_task

from core.jobs import services


@shared_task(name="jobs.run", acks_late=False, time_limit=6 * 3600, soft_time_limit=6 * 3600 - 60)
def run_job(job_id: int) -> None:
    services.job_execute(job_id=job_id)


@shared_task(name="jobs.reap_stale", time_limit=120)
def reap_stale_jobs() -> int:
    return services.job_reap_stale()
