"""Celery shells for billing: one service call each."""

from celery import shared_task

from core.billing import idempotency


@shared_task(name="billing.sweep_idempotency", time_limit=300)
def sweep_idempotency() -> int:
    return idempotency.idempotency_sweep()
