"""Stock meters (models, seats, stored records) are counted from current state.

Apps contribute counters at start-up (``AppConfig.ready``), so core never imports a vertical:
``register_stock_counter(Meter.STORED_RECORDS, "finance documents", fn)``.
"""

from collections.abc import Callable

from core.billing.models import Meter

Counter = Callable[[object], int]
_COUNTERS: dict[str, dict[str, Counter]] = {m: {} for m in (Meter.MODELS, Meter.SEATS, Meter.STORED_RECORDS)}


def register_stock_counter(meter: str, name: str, counter: Counter) -> None:
    _COUNTERS[meter][name] = counter


def stock_count(*, organisation: object, meter: str) -> int:
    return sum(counter(organisation) for counter in _COUNTERS[meter].values())


def stock_breakdown(*, organisation: object, meter: str) -> dict[str, int]:
    return {name: counter(organisation) for name, counter in _COUNTERS[meter].items()}
