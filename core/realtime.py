"""The one way services push events to websockets: after commit, JSON dicts with prefixed types.

Best effort by design: the database row is the truth and pages poll it, so a lost broadcast (or an
in-memory channel layer that a worker process cannot reach) only delays what people see.
"""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


def org_group(organisation_id: int, topic: str) -> str:
    return f"org-{organisation_id}-{topic}"


def broadcast(*, group: str, event_type: str, payload: dict[str, Any]) -> None:
    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        try:
            async_to_sync(layer.group_send)(
                group, {"type": "event.forward", "event": event_type, "data": payload}
            )
        except Exception:  # noqa: BLE001 - a broadcast must never break the write that caused it
            log.warning("broadcast to %s failed", group, exc_info=True)

    transaction.on_commit(send)
