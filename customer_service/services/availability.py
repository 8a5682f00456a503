"""Whether a person can take a hand-off now: the tenant's office hours (per weekday, in its time zone) and
operators' presence (an operator with the inbox open counts as online).

Presence lives in the shared cache (Redis in production, so every web process sees it; the process's own
memory in the embedded default, where one process serves every socket), one entry per operator with the
expiry of each of their open inbox sockets. A socket renews its expiry every third of
``CS_PRESENCE_TTL_S`` and removes it when it closes; a killed browser never closes it, and its entry
lapses within ``CS_PRESENCE_TTL_S``. The candidates are the organisation's members whose role may operate
the inbox, so another organisation's operators never count.
"""

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.cache import cache

from core.errors import InvalidInput
from core.tenancy.models import Membership
from core.tenancy.roles import role_can
from customer_service.models import BotSettings

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


# --- office hours -----------------------------------------------------------------------------------


def timezone_check(name: Any) -> str:
    """An IANA time zone name (Europe/Berlin), or InvalidInput."""
    name = str(name or "").strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"'{name[:64]}' is not a time zone: give a name like Europe/Berlin or America/New_York.",
            details={"field": "timezone"},
        ) from None
    return name


def _minutes(value: str) -> int:
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def office_hours_check(hours: Any) -> dict[str, list[str]]:
    """Office hours as ``{"0": ["09:00", "17:00"], ...}`` (weekday 0 = Monday; a missing day is closed),
    checked and normalised; InvalidInput names the day that is wrong."""
    if not isinstance(hours, dict):
        raise InvalidInput(
            "Office hours must map weekdays to [start, end].", details={"field": "office_hours"}
        )
    checked: dict[str, list[str]] = {}
    for day, span in hours.items():
        if str(day) not in {str(i) for i in range(7)}:
            raise InvalidInput(
                f"'{day}' is not a weekday (0 = Monday to 6 = Sunday).", details={"field": "office_hours"}
            )
        name = WEEKDAYS[int(day)]
        if not isinstance(span, list | tuple) or len(span) != 2 or not all(isinstance(t, str) for t in span):
            raise InvalidInput(f"{name}: give a start and an end time.", details={"field": "office_hours"})
        start, end = (t.strip() for t in span)
        if not _HHMM.match(start) or not _HHMM.match(end):
            raise InvalidInput(
                f"{name}: times are HH:MM, from 00:00 to 24:00.", details={"field": "office_hours"}
            )
        if _minutes(end) <= _minutes(start):
            raise InvalidInput(f"{name}: the end must be after the start.", details={"field": "office_hours"})
        checked[str(int(day))] = [start, end]
    return dict(sorted(checked.items()))


def within_office_hours(*, bot: BotSettings, now: datetime | None = None) -> bool:
    """Whether ``now`` (aware; the current time by default) falls in the bot's office hours, read in its time
    zone. Always true while office hours are off."""
    if not bot.office_hours_enabled:
        return True
    local = (now or datetime.now(tz=ZoneInfo("UTC"))).astimezone(ZoneInfo(bot.timezone))
    span = bot.office_hours.get(str(local.weekday()))
    if not span:
        return False
    minute = local.hour * 60 + local.minute
    return _minutes(span[0]) <= minute < _minutes(span[1])


def office_hours_text(*, bot: BotSettings) -> str:
    """``Monday 09:00-17:00, ... (Europe/Berlin)``: what the bot tells a visitor outside the hours."""
    days = [f"{WEEKDAYS[int(day)]} {start}-{end}" for day, (start, end) in sorted(bot.office_hours.items())]
    return f"{', '.join(days) or 'none set'} ({bot.timezone})"


def office_hours_rows(*, bot: BotSettings) -> list[dict[str, Any]]:
    """One row per weekday for the set-up page: index, name, start and end (empty: closed)."""
    return [
        {
            "day": i,
            "name": name,
            "start": (bot.office_hours.get(str(i)) or ["", ""])[0],
            "end": (bot.office_hours.get(str(i)) or ["", ""])[1],
        }
        for i, name in enumerate(WEEKDAYS)
    ]


# --- operators' presence ----------------------------------------------------------------------------


def _presence_key(organisation_id: int, user_id: int) -> str:
    return f"cs-presence:{organisation_id}:{user_id}"


def operator_presence_mark(
    *, organisation_id: int, user_id: int, channel: str, now: float | None = None
) -> None:
    """Count the operator online through this inbox socket for the next ``CS_PRESENCE_TTL_S`` seconds."""
    ttl = settings.CS_PRESENCE_TTL_S
    now = time.time() if now is None else now
    key = _presence_key(organisation_id, user_id)
    sockets = {name: until for name, until in (cache.get(key) or {}).items() if until > now}
    sockets[channel] = now + ttl
    cache.set(key, sockets, timeout=ttl)


def operator_presence_clear(*, organisation_id: int, user_id: int, channel: str) -> None:
    """The inbox socket closed: it no longer counts (the operator's other tabs still do)."""
    key = _presence_key(organisation_id, user_id)
    now = time.time()
    sockets = {
        name: until for name, until in (cache.get(key) or {}).items() if until > now and name != channel
    }
    if sockets:
        cache.set(key, sockets, timeout=max(1, int(max(sockets.values()) - now) + 1))
    else:
        cache.delete(key)


def operators_online(*, organisation, now: float | None = None) -> int:
    """How many of the organisation's members who may operate the inbox have it open now."""
    now = time.time() if now is None else now
    members = Membership.objects.for_org(organisation).values_list("user_id", "role")
    keys = [
        _presence_key(organisation.pk, user_id)
        for user_id, role in members
        if role_can(role, "inbox.operate")
    ]
    found = cache.get_many(keys) if keys else {}
    return sum(1 for sockets in found.values() if any(until > now for until in (sockets or {}).values()))


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""  # "closed" (outside office hours) or "nobody" (no operator online)


def handoff_availability(*, organisation, bot: BotSettings, now: datetime | None = None) -> Availability:
    """Whether a hand-off now reaches a person soon: within office hours and with an operator online."""
    if not within_office_hours(bot=bot, now=now):
        return Availability(False, "closed")
    if operators_online(organisation=organisation) == 0:
        return Availability(False, "nobody")
    return Availability(True)
