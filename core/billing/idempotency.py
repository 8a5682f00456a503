"""Idempotency keys: a retried request gets the first request's answer back and runs nothing.

As Stripe does it: the first request with a key claims it (a row with the request's fingerprint and no
answer yet), runs, and stores its answer. A request with the same key and fingerprint then gets that answer
back without running; while the first one still runs it gets 409; the same key with a different request
(another body, path or caller) gets 422. Keys belong to one organisation and expire after a day. Only
successful answers are kept: a refused or failed request frees its key, so a retry runs (and is charged)
once it can succeed. The ledger is never told the client's key, so a key reused after it expired runs and is
charged like any new request.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from core.billing.models import IdempotencyRecord
from core.errors import Conflict, TrellisError

TTL = timedelta(hours=24)
# A claimed key without an answer after this long belongs to a request whose process died: it may be retried.
ABANDONED_AFTER = timedelta(minutes=10)


class IdempotencyKeyReused(TrellisError):
    code = "idempotency_key_reused"
    status = 422


class IdempotentRequestInFlight(Conflict):
    code = "idempotency_key_in_use"


@dataclass(frozen=True)
class Replay:
    status_code: int
    body: Any


def _stale(record: IdempotencyRecord, now: datetime) -> bool:
    return record.expires_at <= now or (
        record.status_code is None and record.created_at <= now - ABANDONED_AFTER
    )


def idempotency_begin(*, organisation, key: str, fingerprint: str) -> IdempotencyRecord | Replay:
    """Claim ``key`` for a request, or return the stored answer of the identical request that claimed it.

    Requests run in autocommit (no ATOMIC_REQUESTS), so the claim commits at once and a concurrent duplicate
    sees it.
    """
    for _attempt in range(3):
        now = timezone.now()
        try:
            with transaction.atomic():
                return IdempotencyRecord.all_tenants.create(
                    organisation=organisation, key=key, fingerprint=fingerprint, expires_at=now + TTL
                )
        except IntegrityError:
            pass
        record = IdempotencyRecord.objects.for_org(organisation).filter(key=key).first()
        if record is None:  # released or swept in between: claim it again
            continue
        if _stale(record, now):
            IdempotencyRecord.objects.for_org(organisation).filter(
                pk=record.pk, updated_at=record.updated_at
            ).delete()
            continue
        if record.fingerprint != fingerprint:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used for a different request; use a new key for new work.",
                details={"field": "Idempotency-Key"},
            )
        if record.status_code is None:
            raise IdempotentRequestInFlight(
                "A request with this Idempotency-Key is still running; retry once it has answered.",
                details={"field": "Idempotency-Key"},
            )
        return Replay(status_code=record.status_code, body=record.response)
    raise IdempotentRequestInFlight(
        "This Idempotency-Key is being claimed by another request; retry.",
        details={"field": "Idempotency-Key"},
    )


def idempotency_complete(*, record: IdempotencyRecord, status_code: int, body: Any) -> None:
    """Store the answer that retries with this key get back."""
    record.status_code, record.response = status_code, body
    record.save(update_fields=["status_code", "response", "updated_at"])


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Free the key of a request that was refused or failed: nothing ran to completion, so nothing is kept."""
    IdempotencyRecord.all_tenants.filter(pk=record.pk).delete()


def idempotency_sweep(*, now: datetime | None = None) -> int:
    """Delete expired keys (beat: ``billing.sweep_idempotency``)."""
    deleted, _ = IdempotencyRecord.all_tenants.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted
