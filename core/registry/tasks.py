"""Celery shells for the registry: one service call each."""

from celery import shared_task

from core.registry import services


@shared_task(name="registry.sweep_store", time_limit=600)
def sweep_store() -> int:
    return len(services.store_sweep())
