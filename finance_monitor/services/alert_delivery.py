"""Delivering alerts: live in-app, by e-mail, and by signed webhook, every attempt logged as a ``Delivery``.

In-app: the alert row is the truth; ``fm.alert`` is broadcast to the organisation's ``alerts`` feed after
commit so an open alert page shows it at once. E-mail and webhook run as Celery tasks (enqueued after
commit), one attempt per run; a failed attempt is logged as ``retrying`` with its ``next_retry_at`` and the
task retries itself after ``retry_delay_s(attempt)`` (exponential backoff), up to ``MAX_ATTEMPTS``; the last
failure is logged as ``failed``.

Webhooks are signed as Stripe signs: ``Trellis-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the rule's secret>``; a receiver recomputes it and refuses an old ``t``. The POST has a
short timeout and a deadline for the whole exchange (``DEADLINE_S``: the connection is cut then, however
slowly the receiver drips), follows no redirect (a 3xx is a failure: the signed body is for the url the
tenant gave), and reads at most ``MAX_RESPONSE_BYTES`` of the answer. Only public addresses are reached
(``core.outbound``).
"""

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from urllib.parse import urljoin, urlsplit

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from core.outbound import OutboundRefused, OutboundTimeout, outbound_deadline, outbound_session
from core.realtime import broadcast, org_group
from finance_monitor.models import Alert, AlertRule, Delivery, DeliveryChannel, DeliveryState

MAX_ATTEMPTS = 5
BACKOFF_S = 30.0  # attempt n failed: the next one after BACKOFF_S * 2 ** (n - 1) (30 s, 1, 2, 4 min)
TIMEOUT_S = (3.0, 5.0)  # connect, read
DEADLINE_S = 10.0  # the whole answer, however slowly it drips
MAX_RESPONSE_BYTES = 64 * 1024
EXCERPT_CHARS = 500
EVIDENCE_IN_PAYLOAD = 20
USER_AGENT = "Trellis-FinanceMonitor/1.0 (+webhooks)"


def retry_delay_s(attempt: int) -> float:
    return BACKOFF_S * 2 ** (attempt - 1)


def alert_payload(alert: Alert) -> dict:
    return {
        "id": alert.pk,
        "rule": {"id": alert.rule_id, "name": alert.rule.name},
        "kind": alert.kind,
        "dimension": alert.dimension,
        "key": alert.key,
        "granularity": alert.granularity,
        "bucket_start": alert.bucket_start.isoformat(),
        "window": alert.window,
        "fired_at": alert.fired_at.isoformat(),
        "volume": alert.volume,
        "negative": alert.negative,
        "observed": alert.observed,
        "baseline": alert.baseline,
        "p_value": alert.p_value,
        "evidence_count": alert.evidence_count,
    }


def alerts_deliver(*, alerts: list[Alert]) -> None:
    """Inside the transaction that raised them: broadcast and enqueue the deliveries after commit."""
    from finance_monitor import tasks

    for alert in alerts:
        broadcast(
            group=org_group(alert.organisation_id, "alerts"),
            event_type="fm.alert",
            payload=alert_payload(alert),
        )
        if alert.rule.email_recipients:
            transaction.on_commit(partial(tasks.deliver_alert.delay, alert.pk, DeliveryChannel.EMAIL))
        if alert.rule.webhook_url:
            transaction.on_commit(partial(tasks.deliver_alert.delay, alert.pk, DeliveryChannel.WEBHOOK))


# --- webhooks -----------------------------------------------------------------------------------------


def webhook_signature(*, secret: str, timestamp: int, body: bytes) -> str:
    """The ``Trellis-Signature`` header value."""
    signed = f"{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class PostResult:
    status_code: int | None
    excerpt: str
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return not self.error and self.status_code is not None and 200 <= self.status_code < 300


def target_masked(*, channel: str, target: str) -> str:
    """What a delivery's target may show to members who cannot manage rules: a webhook url is often a bearer
    secret (Slack's ``hooks/services/T/B/XXXX``), so only its scheme and host; e-mail recipients are shown as
    their domains (``j…@example.com``)."""
    if channel == DeliveryChannel.EMAIL:
        masked = []
        for address in (a.strip() for a in target.split(",")):
            local, at, domain = address.rpartition("@")
            masked.append(f"{local[:1]}…@{domain}" if at else "…")
        return ", ".join(masked)
    return _url_host(target)


def _url_host(url: str) -> str:
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "…"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or 'http'}://{host}{port}/…"


def _error_reason(exc: BaseException) -> str:
    """A short reason for a failed request that never quotes the url: requests' and urllib3's texts embed
    its path and query (``Max retries exceeded with url: /services/T/B/SECRET``), so only the operating
    system's words for the innermost socket error (``Connection refused``, ``Name or service not known``)."""
    stack, seen = [exc], set()
    while stack:
        error = stack.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, OSError) and isinstance(error.strerror, str) and error.strerror:
            return error.strerror[:100]
        linked = [error.__cause__, error.__context__, getattr(error, "reason", None), *error.args]
        stack.extend(e for e in linked if isinstance(e, BaseException))
    return "no details"


def webhook_post(
    *,
    url: str,
    secret: str,
    body: bytes,
    event: str,
    timeout: tuple[float, float] | None = None,
    deadline_s: float = DEADLINE_S,
) -> PostResult:
    timeout = timeout or TIMEOUT_S
    timeout = (min(timeout[0], deadline_s), min(timeout[1], deadline_s))
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Trellis-Event": event,
        "Trellis-Signature": webhook_signature(secret=secret, timestamp=timestamp, body=body),
    }
    started = time.monotonic()
    status_code, raw, error = None, b"", ""
    # the deadline cuts the connection when the whole exchange has run deadline_s, however slowly the
    # receiver drips its status line, headers or answer
    with outbound_deadline(deadline_s) as deadline:
        try:
            with (
                outbound_session() as session,
                session.post(
                    url, data=body, headers=headers, timeout=timeout, allow_redirects=False, stream=True
                ) as r,
            ):
                status_code = r.status_code
                if r.is_redirect:
                    location = urljoin(url, r.headers.get("Location", ""))
                    error = f"redirect ({status_code}) to {_url_host(location)} not followed"
                elif not 200 <= status_code < 300:
                    error = f"answered {status_code}"
                try:
                    for chunk in r.iter_content(4096):
                        raw += chunk
                        if len(raw) >= MAX_RESPONSE_BYTES or deadline.expired:
                            break
                except (requests.RequestException, OSError):
                    if not deadline.expired:
                        raise
                    # the status came within the deadline: the receiver has the alert; its answer is cut
        except OutboundRefused as exc:
            error = f"refused: {exc}"
        except (requests.Timeout, OutboundTimeout):
            error = f"timed out (connect {timeout[0]} s, read {timeout[1]} s, {deadline_s:g} s in all)"
        except (requests.RequestException, OSError) as exc:
            if deadline.expired:
                error = f"no answer within {deadline_s:g} s"
            else:  # never the exception's text: it quotes the url's path and query (a secret)
                error = f"{type(exc).__name__} reaching {_url_host(url)}: {_error_reason(exc)}"
    excerpt = raw[:MAX_RESPONSE_BYTES].decode("utf-8", "replace")[:EXCERPT_CHARS]
    return PostResult(status_code, excerpt, error, int((time.monotonic() - started) * 1000))


def _alert_body(alert: Alert) -> bytes:
    from finance_monitor.services.alerts import alert_evidence_query

    evidence = [
        {
            "id": d.pk,
            "title": d.title,
            "url": d.url,
            "text": d.text[:280],
            "sentiment": d.sentiment,
            "score": d.score,
        }
        for d in alert_evidence_query(alert=alert)[:EVIDENCE_IN_PAYLOAD]
    ]
    data = {**alert_payload(alert), "evidence": evidence}
    return json.dumps({"type": "alert.fired", "data": data}, sort_keys=True).encode()


def _record(
    *,
    rule: AlertRule,
    alert: Alert | None,
    channel: str,
    target: str,
    attempt: int,
    result: PostResult,
    retries: bool,
) -> Delivery:
    if result.ok:
        state, next_at = DeliveryState.DELIVERED, None
    elif retries and attempt < MAX_ATTEMPTS:
        state, next_at = DeliveryState.RETRYING, timezone.now() + timedelta(seconds=retry_delay_s(attempt))
    else:
        state, next_at = DeliveryState.FAILED, None
    return Delivery.all_tenants.create(
        organisation_id=rule.organisation_id,
        rule=rule,
        alert=alert,
        channel=channel,
        attempt=attempt,
        target=target[:2000],
        state=state,
        status_code=result.status_code,
        response_excerpt=result.excerpt,
        error=result.error,
        duration_ms=result.duration_ms,
        next_retry_at=next_at,
    )


def alert_webhook_attempt(
    *, alert: Alert, attempt: int, timeout: tuple[float, float] | None = None
) -> Delivery | None:
    """One POST of the alert to its rule's webhook; None if the rule has no webhook any more."""
    rule = alert.rule
    if not rule.webhook_url:
        return None
    result = webhook_post(
        url=rule.webhook_url,
        secret=rule.webhook_secret,
        body=_alert_body(alert),
        event="alert.fired",
        timeout=timeout,
    )
    return _record(
        rule=rule,
        alert=alert,
        channel=DeliveryChannel.WEBHOOK,
        target=rule.webhook_url,
        attempt=attempt,
        result=result,
        retries=True,
    )


def rule_webhook_test(*, rule: AlertRule, timeout: tuple[float, float] | None = None) -> Delivery:
    """Send a signed ``alert.test`` event to the rule's webhook now (one attempt, logged, no retry)."""
    from core.errors import InvalidInput

    if not rule.webhook_url:
        raise InvalidInput("This rule has no webhook url.", details={"field": "webhook_url"})
    body = json.dumps(
        {
            "type": "alert.test",
            "data": {"rule": {"id": rule.pk, "name": rule.name}, "sent_at": timezone.now().isoformat()},
        },
        sort_keys=True,
    ).encode()
    result = webhook_post(
        url=rule.webhook_url, secret=rule.webhook_secret, body=body, event="alert.test", timeout=timeout
    )
    return _record(
        rule=rule,
        alert=None,
        channel=DeliveryChannel.WEBHOOK,
        target=rule.webhook_url,
        attempt=1,
        result=result,
        retries=False,
    )


# --- e-mail -------------------------------------------------------------------------------------------


def _email_text(alert: Alert) -> tuple[str, str]:
    from finance_monitor.services.alerts import alert_evidence_query

    what = "Negative share" if alert.kind == "share" else "Volume"
    target = alert.key or "all documents"
    subject = f"[Trellis] {what} surge: {alert.rule.name} ({target})"
    if alert.kind == "share":
        figures = f"{alert.observed:.0%} negative of {alert.volume} documents; baseline {alert.baseline:.0%}"
    else:
        figures = f"{alert.observed:.0f} documents per {alert.granularity}; baseline {alert.baseline:.1f}"
    lines = [
        f"{what} surge on {target}, {alert.granularity} bucket from {alert.bucket_start:%Y-%m-%d %H:%M} UTC.",
        f"{figures}; p = {alert.p_value:.2g}.",
        "",
        f"Evidence ({alert.evidence_count} documents, first ones):",
    ]
    for document in alert_evidence_query(alert=alert)[:10]:
        lines.append(f"- {(document.title or document.text)[:160]} {document.url}".rstrip())
    return subject, "\n".join(lines)


def alert_email_attempt(*, alert: Alert, attempt: int) -> Delivery | None:
    rule = alert.rule
    if not rule.email_recipients:
        return None
    subject, text = _email_text(alert)
    started = time.monotonic()
    error = ""
    try:
        send_mail(subject, text, settings.DEFAULT_FROM_EMAIL, rule.email_recipients, fail_silently=False)
    except Exception as exc:  # noqa: BLE001 - any backend failure is logged and retried
        # the class and the SMTP code only: the backend's text may list the recipients
        code = getattr(exc, "smtp_code", None)
        error = f"{type(exc).__name__}{f' (SMTP {code})' if code else ''}: {_error_reason(exc)}"
    # 250 is SMTP's "ok": the backend accepted the message
    result = PostResult(None if error else 250, "", error, int((time.monotonic() - started) * 1000))
    return _record(
        rule=rule,
        alert=alert,
        channel=DeliveryChannel.EMAIL,
        target=", ".join(rule.email_recipients),
        attempt=attempt,
        result=result,
        retries=True,
    )


def alert_deliver_attempt(*, alert_id: int, channel: str, attempt: int) -> Delivery | None:
    """The task's one call: attempt ``attempt`` of delivering the alert on ``channel``."""
    alert = Alert.all_tenants.select_related("rule").filter(pk=alert_id).first()
    if alert is None:
        return None
    if channel == DeliveryChannel.EMAIL:
        return alert_email_attempt(alert=alert, attempt=attempt)
    return alert_webhook_attempt(alert=alert, attempt=attempt)
