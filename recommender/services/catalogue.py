"""The catalogue: items upserted in batches (API, up to 1,000 per call) or by CSV/JSONL upload.

An item is keyed by the tenant's ``id``; sending it again updates it. Each bad row is rejected with its
reason and the others are stored. ``deleted``, ``available`` and ``expires_at`` are respected at serving
time (``recommender.services.serving``). New items count against the ``catalogue_items`` meter. New items
and items whose text (title, description, categories) changed lose their vector and are embedded by the
``recommender.embed_items`` task after commit (``recommender.services.text``).
"""

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import transaction
from django.utils import timezone

from core.billing import services as billing
from core.errors import InvalidInput
from recommender.models import Item
from recommender.services import snapshot, text
from recommender.services.rows import (
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

CATALOGUE_METER = "catalogue_items"
ITEM_FIELDS = (
    "title",
    "description",
    "categories",
    "price",
    "available",
    "expires_at",
    "attributes",
    "deleted",
)
MAX_CATEGORIES = 50


@dataclass(frozen=True)
class ItemIn:
    external_id: str
    title: str
    description: str
    categories: list[str]
    price: Decimal | None
    available: bool
    expires_at: datetime | None
    attributes: dict[str, Any]
    deleted: bool


def _categories(raw: Any) -> list[str]:
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):  # CSV: "a|b|c"
        raw = [part for part in raw.split("|")]
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise RowError("categories must be a list of strings (in CSV: separated by |)")
    if any("\x00" in c for c in raw):
        raise RowError("categories contains a NUL character (\\x00)")
    cleaned = [c.strip()[:100] for c in raw if c.strip()]
    if len(cleaned) > MAX_CATEGORIES:
        raise RowError(f"categories has {len(cleaned)} entries; the limit is {MAX_CATEGORIES}")
    return cleaned


def _price(raw: Any) -> Decimal | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise RowError("price must be a number")
    try:
        price = Decimal(str(raw))
    except InvalidOperation:
        raise RowError(f"price {str(raw)[:40]!r} is not a number") from None
    if not price.is_finite() or price < 0 or price >= Decimal("1e10"):
        raise RowError("price must be a number from 0 to 10,000,000,000")
    return price


def _flag(raw: Any, name: str, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return raw.strip().lower() in ("true", "1", "yes")
    raise RowError(f"{name} must be true or false")


def _attributes(raw: Any) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):  # CSV: a JSON object in the cell
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise RowError("attributes must be a JSON object") from None
    if not isinstance(raw, dict):
        raise RowError("attributes must be a JSON object")
    if len(json.dumps(raw)) > 10_000:
        raise RowError("attributes take at most 10,000 characters of JSON")
    if _has_nul(raw):
        raise RowError("attributes contains a NUL character (\\x00) in a key or a value")
    return raw


def _has_nul(value: Any) -> bool:
    """Whether a JSON value holds a NUL in any key or string (PostgreSQL's jsonb cannot store one)."""
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, str):
            if "\x00" in current:
                return True
        elif isinstance(current, dict):
            pending.extend(current.keys())
            pending.extend(current.values())
        elif isinstance(current, list):
            pending.extend(current)
    return False


def item_from_row(row: dict[str, Any]) -> ItemIn:
    """Check one row (API object or upload record); raises RowError with the reason."""
    unknown = sorted(set(row) - {"id", *ITEM_FIELDS})
    if unknown:
        raise RowError(f"unknown fields: {', '.join(unknown)}")
    return ItemIn(
        external_id=id_value(row, "id"),
        title=text_value(row, "title", required=True, limit=500),
        description=text_value(row, "description", required=False, limit=10_000),
        categories=_categories(row.get("categories")),
        price=_price(row.get("price")),
        available=_flag(row.get("available"), "available", True),
        expires_at=time_value(row, "expires_at", required=False, not_after_now=False),
        attributes=_attributes(row.get("attributes")),
        deleted=_flag(row.get("deleted"), "deleted", False),
    )


def items_upsert(*, organisation, rows: list[dict[str, Any]]) -> IngestResult:
    """Create or update up to ``MAX_BATCH`` items; each bad row is rejected with its reason (by index)."""
    if len(rows) > MAX_BATCH:
        raise InvalidInput(
            f"At most {MAX_BATCH} items per call; got {len(rows)}.", details={"field": "items"}
        )
    return _store(organisation=organisation, numbered=list(enumerate(rows)), rejected=[])


def items_upload(*, organisation, data: bytes, filename: str) -> IngestResult:
    """A CSV or JSONL file of items (columns as the API's fields; CSV categories separated by ``|``,
    attributes as a JSON object); rejections name the file's line."""
    numbered, rejected = upload_rows(data=data, filename=filename)
    _check_room(organisation, numbered)
    result = IngestResult()
    for start in range(0, len(numbered), MAX_BATCH):
        part = _store(organisation=organisation, numbered=numbered[start : start + MAX_BATCH], rejected=[])
        result.created, result.updated = result.created + part.created, result.updated + part.updated
        result.rejected.extend(part.rejected)
    result.rejected = sorted([*rejected, *result.rejected], key=lambda r: r.index)
    return result


def items_check_room(*, organisation, rows: list[dict[str, Any]]) -> None:
    """Refuse (402) a set of rows whose new items would pass the plan's catalogue limit."""
    _check_room(organisation, list(enumerate(rows)))


def _check_room(organisation, numbered: list[tuple[int, dict[str, Any]]]) -> None:
    """Refuse a whole file whose new items would pass the plan's catalogue limit, before any is stored
    (the file is stored in batches, each its own transaction)."""
    ids = {str(row.get("id")).strip() for _, row in numbered if isinstance(row, dict) and row.get("id")}
    known = 0
    listed = list(ids)
    for start in range(0, len(listed), 5000):
        chunk = listed[start : start + 5000]
        known += Item.objects.for_org(organisation).filter(external_id__in=chunk).count()
    if len(ids) > known:
        billing.quota_check(organisation=organisation, meter=CATALOGUE_METER, quantity=len(ids) - known)


def _store(
    *, organisation, numbered: list[tuple[int, dict[str, Any]]], rejected: list[Rejection]
) -> IngestResult:
    result = IngestResult(rejected=rejected)
    valid: dict[str, ItemIn] = {}
    for index, row in numbered:
        try:
            if not isinstance(row, dict):
                raise RowError("an item is a JSON object")
            item = item_from_row(row)
        except RowError as exc:
            result.rejected.append(Rejection(index, str(exc)))
            continue
        valid[item.external_id] = item  # the last of repeated ids wins, as a later call would
    with transaction.atomic():
        write_lock(organisation, "catalogue")  # the quota check below and the inserts: one step per org
        existing = {
            i.external_id: i
            for i in Item.objects.for_org(organisation)
            .select_for_update()
            .filter(external_id__in=list(valid))
        }
        new = [item for key, item in valid.items() if key not in existing]
        # what the batch adds to the stock meter (items not deleted): new live items and deleted ones
        # restored, less the live ones it deletes
        growth = sum(not item.deleted for item in new) + sum(
            (stored.deleted and not valid[key].deleted) - (not stored.deleted and valid[key].deleted)
            for key, stored in existing.items()
        )
        if growth > 0:
            billing.quota_check(organisation=organisation, meter=CATALOGUE_METER, quantity=growth)
        Item.all_tenants.bulk_create([Item(organisation=organisation, **_fields(item)) for item in new])
        changed: list[Item] = []
        rewritten = 0
        for key, stored in existing.items():
            before = (stored.title, stored.description, stored.categories)
            for name, value in _fields(valid[key]).items():
                setattr(stored, name, value)
            if (stored.title, stored.description, stored.categories) != before:
                stored.vector, stored.embedder = None, ""  # its text changed: embedded again
                rewritten += 1
            stored.updated_at = timezone.now()  # bulk_update skips auto_now
            changed.append(stored)
        if changed:
            Item.all_tenants.bulk_update(changed, [*ITEM_FIELDS, "vector", "embedder", "updated_at"])
        if new or changed:
            snapshot.catalogue_changed(organisation=organisation)
        if new or rewritten:
            text.items_embed_enqueue(organisation_id=organisation.pk)
    result.created, result.updated = len(new), len(changed)
    return result


def _fields(item: ItemIn) -> dict[str, Any]:
    return {
        "external_id": item.external_id,
        "title": item.title,
        "description": item.description,
        "categories": item.categories,
        "price": item.price,
        "available": item.available,
        "expires_at": item.expires_at,
        "attributes": item.attributes,
        "deleted": item.deleted,
    }


def catalogue_count(organisation) -> int:
    """The ``catalogue_items`` stock meter: items that are not deleted."""
    return Item.objects.for_org(organisation).filter(deleted=False).count()
