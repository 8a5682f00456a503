"""Celery shells for privacy: one service call each."""

from celery import shared_task

from core.privacy.export import exports_sweep


@shared_task(name="privacy.sweep_exports", time_limit=600)
def sweep_exports() -> int:
    return exports_sweep()
