"""Diversity: at most ``max_per_category`` items of any one category in an answer.

Each organisation may set a default (``diversity_set``; null: no limit) and each request may override it
(``max_per_category``: 1 to 100, or 0 for no limit). Serving (``services.serving``) applies it while it picks
the top k: an item is skipped when any of its categories already has the limit, and the next best items
fill its place, so an answer still has ``k`` items while the catalogue has them. Items without categories
are not limited.
"""

from typing import Any

from django.db import transaction

from core.errors import InvalidInput
from recommender.models import RecommenderSettings
from recommender.services.generation import serving_changed

MAX_PER_CATEGORY = 100


def check_max_per_category(value: Any, *, allow_zero: bool) -> int | None:
    """A valid limit (None: none given), or InvalidInput."""
    if value is None:
        return None
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_PER_CATEGORY:
        raise InvalidInput(
            f"max_per_category must be a whole number from {low} to {MAX_PER_CATEGORY}"
            + (" (0: no limit)." if allow_zero else ", or null for no limit."),
            details={"field": "max_per_category"},
        )
    return value


def diversity_get(*, organisation) -> int | None:
    row = RecommenderSettings.objects.for_org(organisation).first()
    return None if row is None else row.max_per_category


def diversity_set(*, organisation, max_per_category: Any) -> int | None:
    """Set the organisation's default limit per category (null: no limit)."""
    limit = check_max_per_category(max_per_category, allow_zero=False)
    with transaction.atomic():
        row, _ = RecommenderSettings.all_tenants.select_for_update().get_or_create(organisation=organisation)
        row.max_per_category = limit
        row.save(update_fields=["max_per_category", "updated_at"])
        serving_changed(organisation=organisation)
    return limit


def effective_limit(*, organisation, requested: int | None) -> int | None:
    """The limit an answer uses: the request's (0: none), else the organisation's default."""
    if requested is not None:
        return requested or None
    return diversity_get(organisation=organisation)


def within_limit(categories: list[str], counts: dict[str, int], limit: int | None) -> bool:
    """Whether an item with ``categories`` may join an answer whose categories are counted in ``counts``
    (and counts it if so)."""
    if limit is not None and any(counts.get(c, 0) >= limit for c in categories):
        return False
    for c in set(categories):
        counts[c] = counts.get(c, 0) + 1
    return True
