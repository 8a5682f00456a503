"""Celery shells for the support chatbot: one service call each."""

from celery import shared_task
from django.conf import settings

from customer_service import services


@shared_task(name="customer_service.close_idle", time_limit=600)
def close_idle() -> int:
    return services.conversations_close_idle(older_than_hours=settings.CS_IDLE_CLOSE_HOURS)


@shared_task(name="customer_service.send_transcript", time_limit=120, max_retries=0)  # default queue
def send_transcript(conversation_id: int, email: str) -> int:
    """A visitor's e-mail transcript (``services.widget.transcript_send``)."""
    from customer_service.services import widget

    return widget.transcript_send(conversation_id=conversation_id, email=email)
