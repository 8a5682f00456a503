"""Support analytics: what the bot and the operators did over a date range, read from the conversations.

A conversation counts on the day it started, in the organisation's time zone (``BotSettings.timezone``);
the range is whole days, ``date_from`` to ``date_to`` inclusive, at most ``MAX_RANGE_DAYS``. Definitions:

- handed off: the bot handed the conversation to a person (a hand-off message), or an operator wrote in it;
- automated: closed, never handed off and no operator message (the bot alone dealt with it); the automation
  rate is automated conversations over closed ones, the hand-off rate handed-off ones over all;
- hand-off reasons: ``Conversation.handoff_reason`` grouped into kinds (``REASON_KINDS``; the reason texts
  carry numbers and intent names); "Handed back to the bot" where an operator gave it back (which clears
  the reason), "Taken over by an operator" where one stepped in without a hand-off;
- first response: from the first hand-off message to the first operator message after it; resolution:
  from the start to ``closed_at``, for closed conversations a person handled; median and 90th percentile
  (linear interpolation between the closest ranks) in seconds;
- CSAT: of the rated conversations, the share rated 4 or 5, the count and the mean rating;
- intent mix: the intents of the bot's template answers in those conversations.

Everything is read through the organisation's own rows (``for_org``): another tenant's conversations are
never counted. The unanswered questions, grouped by meaning, are in ``unanswered``.
"""

import csv
import io
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from core.errors import InvalidInput
from customer_service.models import AnswerSource, Conversation, ConversationStatus, Message, Sender
from customer_service.services.bot import bot_settings_for

DEFAULT_DAYS = 30
MAX_RANGE_DAYS = 366
INTENTS_CHARTED = 12
HANDED_BACK = "Handed back to the bot"  # an operator gave it back, which clears the reason
TAKEN_OVER = "Taken over by an operator"  # an operator stepped in without a hand-off
OTHER_REASON = "Other"
# (kind, pattern on the reason text) in order; the texts are written by ``answering`` and ``suggestions``.
REASON_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("The visitor asked for a person", re.compile(r"^The visitor asked for a person")),
    ("Not sure of the intent", re.compile(r"^Not sure:")),
    ("No answer for the intent", re.compile(r"^No answer template for|, which has no answer any more")),
    ("None of the suggestions fitted", re.compile(r"^None of the bot's suggestions fitted")),
    ("No intent model", re.compile(r"^No intent model is active")),
    ("Prediction quota used up", re.compile(r"quota is used up")),
    ("The bot failed", re.compile(r"^The bot failed")),
)
CSV_COLUMNS = (
    "date",
    "conversations",
    "closed",
    "automated",
    "handed_off",
    "rated",
    "rated_4_or_5",
    "mean_rating",
)


@dataclass(frozen=True)
class Period:
    """Whole days ``start``..``end`` (inclusive) in ``zone``; ``since``/``until`` bound them as instants."""

    start: date
    end: date
    zone: ZoneInfo

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time.min, tzinfo=self.zone)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=self.zone)

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _parse_day(value: Any, field: str) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, date):
        return value
    try:
        day = date.fromisoformat(str(value).strip())
    except ValueError:
        raise InvalidInput(
            f"'{str(value)[:40]}' is not a date: write it as YYYY-MM-DD.", details={"field": field}
        )
    if not 2000 <= day.year <= 2999:
        raise InvalidInput("Give a date between the years 2000 and 2999.", details={"field": field})
    return day


def analytics_period(*, organisation, date_from: Any = None, date_to: Any = None) -> Period:
    """The range asked for (ISO dates, either may be empty): by default the last ``DEFAULT_DAYS`` days up to
    today in the organisation's time zone. Refused: a date that is not one, ``from`` after ``to``, and a range
    of more than ``MAX_RANGE_DAYS`` days."""
    zone = _zone(bot_settings_for(organisation=organisation).timezone)
    start, end = _parse_day(date_from, "from"), _parse_day(date_to, "to")
    if end is None:
        today = timezone.now().astimezone(zone).date()
        end = max(today, start) if start else today
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise InvalidInput(
            f"The start ({start.isoformat()}) is after the end ({end.isoformat()}).",
            details={"field": "from"},
        )
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise InvalidInput(
            f"The range is {(end - start).days + 1} days: choose at most {MAX_RANGE_DAYS}.",
            details={"field": "from"},
        )
    return Period(start, end, zone)


def reason_kind(reason: str) -> str:
    """The kind of a hand-off reason (``REASON_KINDS``)."""
    for kind, pattern in REASON_KINDS:
        if pattern.search(reason):
            return kind
    return OTHER_REASON


def _reason(row: dict[str, Any]) -> str:
    if row["handoff_reason"]:
        return reason_kind(row["handoff_reason"])
    return HANDED_BACK if row["handed"] else TAKEN_OVER


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values`` with linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _timing(values: list[float]) -> dict[str, Any]:
    return {"count": len(values), "median_s": percentile(values, 50), "p90_s": percentile(values, 90)}


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _conversations(*, organisation, period: Period):
    """The organisation's conversations started in ``period``, each with what the figures need."""
    messages = Message.objects.for_org(organisation).filter(conversation=OuterRef("pk"))
    handoffs = messages.filter(source=AnswerSource.HANDOFF)
    operator = messages.filter(sender=Sender.OPERATOR)
    first_handoff = handoffs.order_by("created_at").values("created_at")[:1]
    first_reply = (
        operator.filter(created_at__gte=OuterRef("first_handoff")).order_by("created_at").values("created_at")
    )
    return (
        Conversation.objects.for_org(organisation)
        .filter(created_at__gte=period.since, created_at__lt=period.until)
        .annotate(
            handed=Exists(handoffs),
            operated=Exists(operator),
            first_handoff=Subquery(first_handoff),
        )
        .annotate(first_reply=Subquery(first_reply[:1]))
        .values(
            "created_at",
            "closed_at",
            "status",
            "rating",
            "handoff_reason",
            "handed",
            "operated",
            "first_handoff",
            "first_reply",
        )
        .order_by("created_at", "pk")
    )


def _day_row(day: date) -> dict[str, Any]:
    return {
        "date": day.isoformat(),
        "conversations": 0,
        "closed": 0,
        "automated": 0,
        "handed_off": 0,
        "rated": 0,
        "rated_4_or_5": 0,
        "rating_sum": 0,
    }


def _intent_mix(*, organisation, period: Period) -> list[dict[str, Any]]:
    rows = (
        Message.objects.for_org(organisation)
        .filter(
            conversation__created_at__gte=period.since,
            conversation__created_at__lt=period.until,
            sender=Sender.BOT,
            source=AnswerSource.TEMPLATE,
        )
        .exclude(intent="")
        .values_list("intent", flat=True)
    )
    counts = Counter(rows)
    total = sum(counts.values())
    return [
        {"intent": intent, "count": n, "share": n / total}
        for intent, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]


def support_analytics(*, organisation, period: Period) -> dict[str, Any]:
    """The figures of the module docstring for ``period`` (a JSON-ready dict)."""
    days = {day: _day_row(day) for day in period.days}
    reasons: Counter[str] = Counter()
    first_response: list[float] = []
    resolution: list[float] = []
    ratings: list[int] = []
    for row in _conversations(organisation=organisation, period=period):
        day = days[row["created_at"].astimezone(period.zone).date()]
        day["conversations"] += 1
        person = row["handed"] or row["operated"]
        closed = row["status"] == ConversationStatus.CLOSED
        day["closed"] += closed
        day["automated"] += closed and not person
        day["handed_off"] += person
        if person:
            reasons[_reason(row)] += 1
        if row["first_handoff"] is not None and row["first_reply"] is not None:
            first_response.append((row["first_reply"] - row["first_handoff"]).total_seconds())
        if person and closed and row["closed_at"] is not None:
            resolution.append((row["closed_at"] - row["created_at"]).total_seconds())
        if row["rating"] is not None:
            ratings.append(row["rating"])
            day["rated"] += 1
            day["rated_4_or_5"] += row["rating"] >= 4
            day["rating_sum"] += row["rating"]
    series = [_daily(day) for day in days.values()]
    total = sum(day["conversations"] for day in series)
    closed = sum(day["closed"] for day in series)
    automated = sum(day["automated"] for day in series)
    handed = sum(day["handed_off"] for day in series)
    positive = sum(1 for rating in ratings if rating >= 4)
    return {
        "from": period.start.isoformat(),
        "to": period.end.isoformat(),
        "timezone": period.zone.key,
        "conversations": total,
        "closed": closed,
        "automated": automated,
        "automation_rate": _rate(automated, closed),
        "handed_off": handed,
        "handoff_rate": _rate(handed, total),
        "handoff_reasons": [
            {"reason": reason, "count": n}
            for reason, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
        ],
        "first_response": _timing(first_response),
        "resolution": _timing(resolution),
        "csat": {
            "rated": len(ratings),
            "satisfied": positive,
            "score": _rate(positive, len(ratings)),
            "mean": sum(ratings) / len(ratings) if ratings else None,
        },
        "intents": _intent_mix(organisation=organisation, period=period),
        "daily": series,
    }


def _daily(day: dict[str, Any]) -> dict[str, Any]:
    rating_sum = day.pop("rating_sum")
    day["mean_rating"] = rating_sum / day["rated"] if day["rated"] else None
    return day


def analytics_csv(*, figures: dict[str, Any]) -> str:
    """The daily series of ``support_analytics`` as CSV (header first; only dates and numbers)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for day in figures["daily"]:
        mean = day["mean_rating"]
        writer.writerow([*(day[c] for c in CSV_COLUMNS[:-1]), "" if mean is None else f"{mean:.2f}"])
    return out.getvalue()


def chart_data(*, figures: dict[str, Any]) -> dict[str, Any]:
    """What the page's charts draw (Chart.js): the daily series, the hand-off reasons and the intent mix."""
    daily = figures["daily"]
    return {
        "labels": [day["date"] for day in daily],
        "conversations": [day["conversations"] for day in daily],
        "automated": [day["automated"] for day in daily],
        "handed_off": [day["handed_off"] for day in daily],
        "csat": [round(day["rated_4_or_5"] / day["rated"], 4) if day["rated"] else None for day in daily],
        "reasons": {
            "labels": [r["reason"] for r in figures["handoff_reasons"]],
            "counts": [r["count"] for r in figures["handoff_reasons"]],
        },
        "intents": {
            "labels": [i["intent"] for i in figures["intents"][:INTENTS_CHARTED]],
            "counts": [i["count"] for i in figures["intents"][:INTENTS_CHARTED]],
        },
    }


def duration(seconds: float | None) -> str:
    """A duration for people: "45 s", "12 min", "3.5 h" ("" for none)."""
    if seconds is None:
        return ""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


__all__ = [
    "CSV_COLUMNS",
    "MAX_RANGE_DAYS",
    "Period",
    "analytics_csv",
    "analytics_period",
    "chart_data",
    "duration",
    "percentile",
    "reason_kind",
    "support_analytics",
]
