"""Behaviour: events ingested in batches (API, up to 1,000 per call) or by upload, idempotent by event id.

Rules, per row (a bad row is rejected with its reason; the rest are stored):
- ``id`` (the tenant's event id) is required; an id already stored is answered ``existing`` and not stored
  or counted again, whatever the rest of the row says (events are facts: they are not edited).
- ``item`` must name an item of the catalogue (deleted ones included): an event for an unknown item is
  rejected (``unknown item``), so send the catalogue first. Users need no registration: any user id is
  accepted and a new id starts a new history.
- ``type`` is one of view, click, add_to_cart, purchase, rating; a rating needs a ``value`` from 0 to 5.
- ``occurred_at`` is ISO 8601 with a time zone and not more than five minutes in the future.
A newly stored click, add-to-cart or purchase is credited to the experiment impression that showed its item
(``services.experiments.feedback_attribute``).
Each organisation weighs event types (``event_weights_set``); the model and the histories read at request
time use those weights.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q

from core.billing import services as billing
from core.errors import InvalidInput
from core.tenancy.models import Organisation
from recommender.models import DEFAULT_EVENT_WEIGHTS, Event, EventType, Item, RecommenderSettings
from recommender.services import experiments, snapshot
from recommender.services.generation import serving_changed
from recommender.services.rows import (
    EARLIEST_TIME,
    LATEST_TIME,
    MAX_BATCH,
    IngestResult,
    Rejection,
    RowError,
    id_value,
    text_value,
    time_value,
    upload_rows,
    write_lock,
)

EVENT_FIELDS = {"id", "user", "item", "type", "value", "occurred_at"}
EVENTS_METER = "stored_events"  # a stock meter: the events the organisation has stored


@dataclass(frozen=True)
class EventIn:
    external_id: str
    user: str
    item: str
    type: str
    value: float | None
    occurred_at: datetime


def _value(raw: Any, type_: str) -> float | None:
    if raw is None or raw == "":
        if type_ == EventType.RATING:
            raise RowError("a rating needs a value from 0 to 5")
        return None
    if isinstance(raw, bool):
        raise RowError("value must be a number")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise RowError(f"value {str(raw)[:40]!r} is not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise RowError("value must be a finite number")
    if type_ == EventType.RATING and not 0 <= value <= 5:
        raise RowError("a rating's value is from 0 to 5")
    return value


def event_from_row(row: dict[str, Any]) -> EventIn:
    unknown = sorted(set(row) - EVENT_FIELDS)
    if unknown:
        raise RowError(f"unknown fields: {', '.join(unknown)}")
    type_ = text_value(row, "type", required=True, limit=20)
    if type_ not in EventType.values:
        raise RowError(f"type {type_[:20]!r} is not one of {', '.join(EventType.values)}")
    occurred = time_value(row, "occurred_at", required=True, not_after_now=True)
    assert occurred is not None
    return EventIn(
        external_id=text_value(row, "id", required=True, limit=200),
        user=text_value(row, "user", required=True, limit=200),
        item=id_value(row, "item"),
        type=type_,
        value=_value(row.get("value"), type_),
        occurred_at=occurred,
    )


def events_ingest(*, organisation, rows: list[dict[str, Any]]) -> IngestResult:
    """Store up to ``MAX_BATCH`` events; returns what was created, already there, and rejected (by index)."""
    if len(rows) > MAX_BATCH:
        raise InvalidInput(
            f"At most {MAX_BATCH} events per call; got {len(rows)}.", details={"field": "events"}
        )
    return _store(organisation=organisation, numbered=list(enumerate(rows)))


def events_upload(*, organisation, data: bytes, filename: str) -> IngestResult:
    """A CSV or JSONL file of events (the API's fields as columns); rejections name the file's line. A file
    whose new event ids would pass the plan's ``stored_events`` limit is refused whole (402) first."""
    numbered, rejected = upload_rows(data=data, filename=filename)
    _check_room(organisation, numbered)
    result = IngestResult(rejected=rejected)
    for start in range(0, len(numbered), MAX_BATCH):
        part = _store(organisation=organisation, numbered=numbered[start : start + MAX_BATCH])
        result.created, result.existing = result.created + part.created, result.existing + part.existing
        result.rejected.extend(part.rejected)
    result.rejected.sort(key=lambda r: r.index)
    return result


def _check_room(organisation, numbered: list[tuple[int, Any]]) -> None:
    """Refuse a whole file whose new event ids would pass the plan's limit, before any is stored (the file is
    stored in batches, each its own transaction, each checked again)."""
    ids = {str(row.get("id")).strip() for _, row in numbered if isinstance(row, dict) and row.get("id")}
    listed, known = list(ids), 0
    for start in range(0, len(listed), 5000):
        chunk = listed[start : start + 5000]
        known += Event.objects.for_org(organisation).filter(external_id__in=chunk).count()
    if len(ids) > known:
        billing.quota_check(organisation=organisation, meter=EVENTS_METER, quantity=len(ids) - known)


def events_count(organisation) -> int:
    """The ``stored_events`` stock meter."""
    return Event.objects.for_org(organisation).count()


def _checked(numbered: list[tuple[int, Any]], result: IngestResult) -> dict[str, tuple[int, EventIn]]:
    valid: dict[str, tuple[int, EventIn]] = {}
    for index, row in numbered:
        try:
            if not isinstance(row, dict):
                raise RowError("an event is a JSON object")
            event = event_from_row(row)
        except RowError as exc:
            result.rejected.append(Rejection(index, str(exc)))
            continue
        if event.external_id in valid:
            result.existing += 1  # the same id twice in one batch: stored once
            continue
        valid[event.external_id] = (index, event)
    return valid


def _store(*, organisation, numbered: list[tuple[int, Any]]) -> IngestResult:
    result = IngestResult()
    valid = _checked(numbered, result)
    with transaction.atomic():
        write_lock(organisation, "events")  # the quota check and the inserts: one step per organisation
        _store_checked(organisation=organisation, valid=valid, result=result)
    result.rejected.sort(key=lambda r: r.index)
    return result


def _store_checked(*, organisation, valid: dict[str, tuple[int, EventIn]], result: IngestResult) -> None:
    stored = set(
        Event.objects.for_org(organisation)
        .filter(external_id__in=list(valid))
        .values_list("external_id", flat=True)
    )
    result.existing += len(stored)
    items = dict(
        Item.objects.for_org(organisation)
        .filter(external_id__in={e.item for _, e in valid.values()})
        .values_list("external_id", "pk")
    )
    new: list[Event] = []
    created: set[str] = set()
    for key, (index, event) in valid.items():
        if key in stored:
            continue
        if event.item not in items:
            result.rejected.append(
                Rejection(index, f"unknown item {event.item[:60]!r}: send it to the catalogue first")
            )
            continue
        created.add(key)
        new.append(
            Event(
                organisation=organisation,
                external_id=key,
                user=event.user,
                item_id=items[event.item],
                type=event.type,
                value=event.value,
                occurred_at=event.occurred_at,
            )
        )
    if new:  # a batch that would pass the plan's limit is refused whole (402), as the catalogue's
        billing.quota_check(organisation=organisation, meter=EVENTS_METER, quantity=len(new))
    # the lock serialises this organisation's batches; the constraint still keeps one of a repeated id
    Event.all_tenants.bulk_create(new, ignore_conflicts=True)
    result.created = len(new)
    # feedback on items an experiment served is credited to its arm (a flag: a repeat cannot count twice)
    experiments.feedback_attribute(
        organisation=organisation,
        events=[
            (e.user, e.item, e.type, e.occurred_at) for _, e in valid.values() if e.external_id in created
        ],
    )


def out_of_range_times_repair() -> dict[str, int]:
    """Make readable again the organisations that stored a time before 1900 or after 9998 (accepted until
    rows.time_value refused them; ``0001-01-01T00:00:00+14:00`` is stored as a BC timestamp that no read can
    return, so the item list, serving and training failed). Such events are deleted (a fact at an impossible
    time cannot be corrected); an item's expiry before 1900 becomes 1900 (still expired) and one after 9998
    becomes none (never expires). Only updates and deletes: the bad rows are never read."""
    with transaction.atomic():
        items_low = Item.all_tenants.filter(expires_at__lt=EARLIEST_TIME)
        items_high = Item.all_tenants.filter(expires_at__gte=LATEST_TIME)
        touched = set(items_low.values_list("organisation_id", flat=True))
        touched |= set(items_high.values_list("organisation_id", flat=True))
        repaired = items_low.update(expires_at=EARLIEST_TIME) + items_high.update(expires_at=None)
        bad_events = Event.all_tenants.filter(
            Q(occurred_at__lt=EARLIEST_TIME) | Q(occurred_at__gte=LATEST_TIME)
        )
        deleted = bad_events._raw_delete(bad_events.db)  # the ORM's delete() would read the rows first
        for organisation_id in touched:
            snapshot.catalogue_changed(organisation=Organisation(pk=organisation_id))
    return {"items": repaired, "events": deleted}


def event_weights(*, organisation) -> dict[str, float]:
    """The organisation's weight per event type (the defaults where it set none)."""
    row = RecommenderSettings.objects.for_org(organisation).first()
    weights = dict(DEFAULT_EVENT_WEIGHTS)
    if row is not None:
        weights.update({k: float(v) for k, v in row.event_weights.items() if k in weights})
    return weights


def event_weights_set(*, organisation, weights: dict[str, Any]) -> dict[str, float]:
    """Set some or all event-type weights (each from 0 to 100); the others keep their value."""
    unknown = sorted(set(weights) - set(EventType.values))
    if unknown:
        raise InvalidInput(f"Unknown event types: {', '.join(unknown)}.", details={"field": "weights"})
    for key, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise InvalidInput(f"The weight of {key} must be a number from 0 to 100.", details={"field": key})
    with transaction.atomic():
        row, _ = RecommenderSettings.all_tenants.select_for_update().get_or_create(organisation=organisation)
        row.event_weights = {**row.event_weights, **{k: float(v) for k, v in weights.items()}}
        row.save(update_fields=["event_weights", "updated_at"])
        serving_changed(organisation=organisation)
    return event_weights(organisation=organisation)


def event_weight(*, weights: dict[str, float], type_: str, value: float | None) -> float:
    """What one event adds to a user's affinity for its item."""
    base = weights.get(type_, 0.0)
    if type_ == EventType.RATING:
        return base * (value or 0.0) / 5.0
    return base
