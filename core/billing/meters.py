"""The meters: what the platform counts and limits per plan, declared as data.

A meter is a ``MeterSpec``: a code, a kind (``flow``: summed from the ledger over the billing month;
``stock``: counted from the current state), a unit, a label, the default limit on each plan (by plan code)
and, for a stock meter, the function that counts it. Core declares its own seven below; a product declares
its meters in its ``Product`` (``core.products``), which registers them here while Django starts, so a new
meter needs no core model, migration or plan seed. Every registered meter is mirrored into the
``MeterDefinition`` table (after ``migrate``, and whenever a plan limit is written); a plan's limit is its
``PlanLimit`` row for the meter when there is one (seeded from the old plan columns, editable in the admin)
and the declared default for the plan's code otherwise (0 when neither exists: the meter is not on that
plan).

Other apps may add to a stock meter's count (``register_stock_counter``): the stored records of the model
registry and of a product's knowledge base are one meter.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from core.errors import InvalidInput


class Meter(models.TextChoices):
    """Core's own meter codes (the set is open: products register theirs)."""

    # Flow meters: summed from the ledger over the current month.
    PREDICTIONS = "predictions", "Predictions"
    TRAINING_JOBS = "training_jobs", "Training jobs"
    GPU_MINUTES = "gpu_minutes", "GPU minutes"
    API_CALLS = "api_calls", "API calls"
    # Stock meters: counted from the current state.
    MODELS = "models", "Models"
    SEATS = "seats", "Seats"
    STORED_RECORDS = "stored_records", "Stored records"


Counter = Callable[[object], int]
MeterKind = Literal["flow", "stock"]


@dataclass(frozen=True)
class MeterSpec:
    """One meter and its default limit on each plan (plan code -> limit)."""

    code: str  # slug, at most 32 characters; the ``meter`` of ledger lines and quota errors
    kind: MeterKind
    unit: str  # one of what is counted, singular ("prediction", "minute")
    label: str  # plural, as the usage page and refusals name it ("Predictions", "GPU minutes")
    limits: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    counter: Counter | None = None  # stock meters: counts the organisation's current total

    @property
    def monthly(self) -> bool:
        return self.kind == "flow"


def _core(code, kind, unit, label, trial, pro, enterprise) -> MeterSpec:  # noqa: ANN001
    return MeterSpec(
        str(code.value),
        kind,
        unit,
        label,
        MappingProxyType({"trial": trial, "pro": pro, "enterprise": enterprise}),
    )


# Core's meters with the limits the three public plans were seeded with (billing 0003, copied into
# PlanLimit rows by 0007): what a plan created after the tables were emptied (the tests) falls back to.
CORE_METERS = (
    _core(Meter.PREDICTIONS, "flow", "prediction", "Predictions", 2_000, 250_000, 5_000_000),
    _core(Meter.TRAINING_JOBS, "flow", "training job", "Training jobs", 5, 100, 1_000),
    _core(Meter.GPU_MINUTES, "flow", "minute", "GPU minutes", 30, 600, 6_000),
    _core(Meter.API_CALLS, "flow", "call", "API calls", 10_000, 1_000_000, 20_000_000),
    _core(Meter.MODELS, "stock", "model", "Models", 3, 25, 250),
    _core(Meter.SEATS, "stock", "seat", "Seats", 3, 15, 200),
    _core(Meter.STORED_RECORDS, "stock", "record", "Stored records", 10_000, 1_000_000, 20_000_000),
)

_METERS: dict[str, MeterSpec] = {}
_COUNTERS: dict[str, dict[str, Counter]] = {}


def register_meter(spec: MeterSpec, *, owner: str = "core") -> None:
    """Declare a meter (once per process; the same declaration again changes nothing)."""
    if not spec.code or len(spec.code) > 32 or not spec.code.replace("_", "").isalnum():
        raise ImproperlyConfigured(f"Meter code '{spec.code}' must be a slug of at most 32 characters.")
    if spec.kind not in ("flow", "stock"):
        raise ImproperlyConfigured(f"Meter '{spec.code}': kind must be 'flow' or 'stock', not '{spec.kind}'.")
    if (spec.kind == "stock") != (spec.counter is not None) and spec.code not in _CORE_CODES:
        raise ImproperlyConfigured(
            f"Meter '{spec.code}': a stock meter needs a counter, a flow meter has none."
        )
    if any(not isinstance(v, int) or v < 0 for v in spec.limits.values()):
        raise ImproperlyConfigured(f"Meter '{spec.code}': plan limits are whole numbers >= 0.")
    previous = _METERS.get(spec.code)
    if previous is not None:
        if previous == spec:
            return
        raise ImproperlyConfigured(f"Meter '{spec.code}' is declared twice ({owner}).")
    _METERS[spec.code] = spec
    _COUNTERS.setdefault(spec.code, {})
    if spec.counter is not None:
        _COUNTERS[spec.code][spec.code] = spec.counter


_CORE_CODES = frozenset(m.code for m in CORE_METERS)  # their counters come from the apps that own the rows
for _spec in CORE_METERS:
    register_meter(_spec)


def meter_spec(code: str) -> MeterSpec:
    spec = _METERS.get(str(code))
    if spec is None:
        raise InvalidInput(f"Unknown meter '{code}'.", details={"field": "meter"})
    return spec


def meter_specs() -> list[MeterSpec]:
    """Every registered meter: core's first, then products' in registration order."""
    return list(_METERS.values())


def meter_codes() -> list[str]:
    return list(_METERS)


def flow_meters() -> tuple[str, ...]:
    return tuple(code for code, spec in _METERS.items() if spec.kind == "flow")


def stock_meters() -> tuple[str, ...]:
    return tuple(code for code, spec in _METERS.items() if spec.kind == "stock")


def register_stock_counter(meter: str, name: str, counter: Counter) -> None:
    """Add a contribution to a stock meter's count (``name`` says what it counts)."""
    if meter_spec(meter).kind != "stock":
        raise ImproperlyConfigured(f"'{meter}' is a flow meter: it is summed from the ledger, not counted.")
    _COUNTERS[str(meter)][name] = counter


def stock_count(*, organisation: object, meter: str) -> int:
    return sum(counter(organisation) for counter in _COUNTERS[str(meter)].values())


def stock_breakdown(*, organisation: object, meter: str) -> dict[str, int]:
    return {name: counter(organisation) for name, counter in _COUNTERS[str(meter)].items()}
