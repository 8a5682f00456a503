"""Plans, subscriptions and the append-only usage ledger."""

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models

from core.base_models import TenantModel, TimeStampedModel
from core.billing.meters import Meter, meter_spec, meter_specs
from core.errors import InvalidInput

# Plan columns that held core meters' limits before meters became data (billing 0007 moved them into
# PlanLimit). Deprecated: kept as properties (read, assign, ``Plan(...)``/``create``/``update`` keywords) so
# older callers go on working; new code calls ``plan.limit_for(meter)`` and ``plan_limit_set``.
LEGACY_LIMIT_FIELDS: dict[str, str] = {
    "predictions_per_month": Meter.PREDICTIONS,
    "training_jobs_per_month": Meter.TRAINING_JOBS,
    "gpu_minutes_per_month": Meter.GPU_MINUTES,
    "api_calls_per_month": Meter.API_CALLS,
    "max_models": Meter.MODELS,
    "max_seats": Meter.SEATS,
    "max_stored_records": Meter.STORED_RECORDS,
}


class MeterDefinition(models.Model):
    """The table of meters, mirrored from the registered ``MeterSpec``s (``core.billing.meters``)."""

    code = models.SlugField(max_length=32, unique=True)
    kind = models.CharField(max_length=5, choices=[("flow", "Flow (per month)"), ("stock", "Stock (now)")])
    unit = models.CharField(max_length=40)
    label = models.CharField(max_length=60)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.label


class PlanQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ANN003 - Django signature
        limits = {LEGACY_LIMIT_FIELDS[k]: kwargs.pop(k) for k in list(kwargs) if k in LEGACY_LIMIT_FIELDS}
        pks = list(self.values_list("pk", flat=True)) if limits else []
        for pk in pks:
            plan_limits_write(pk, limits)
        return super().update(**kwargs) if kwargs else len(pks)


def _legacy_limit(field: str) -> property:
    meter = LEGACY_LIMIT_FIELDS[field]

    def get(self: "Plan") -> int:
        return self.limit_for(meter)

    def set_(self: "Plan", value: int) -> None:
        self._pending_limits[meter] = value
        self._limits_cache = None

    return property(get, set_, doc=f"Deprecated: ``limit_for('{meter}')``.")


class Plan(TimeStampedModel):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=60)
    price_cents = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, default="EUR")
    trial_days = models.PositiveIntegerField(null=True, blank=True)
    is_public = models.BooleanField(default=True)
    requests_per_minute = models.PositiveIntegerField()

    objects = PlanQuerySet.as_manager()

    predictions_per_month = _legacy_limit("predictions_per_month")
    training_jobs_per_month = _legacy_limit("training_jobs_per_month")
    gpu_minutes_per_month = _legacy_limit("gpu_minutes_per_month")
    api_calls_per_month = _legacy_limit("api_calls_per_month")
    max_models = _legacy_limit("max_models")
    max_seats = _legacy_limit("max_seats")
    max_stored_records = _legacy_limit("max_stored_records")

    class Meta:
        ordering = ["price_cents"]

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self._pending_limits: dict[str, int] = {}
        self._limits_cache: dict[str, int] | None = None
        super().__init__(*args, **kwargs)

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().save(*args, **kwargs)
        if self._pending_limits:
            plan_limits_write(self.pk, self._pending_limits)
            self._pending_limits, self._limits_cache = {}, None

    def limits(self) -> dict[str, int]:
        """This plan's ``PlanLimit`` rows, meter code -> limit (read once per instance)."""
        if self._limits_cache is None:
            rows = (
                PlanLimit.objects.filter(plan_id=self.pk).values_list("meter_id", "limit") if self.pk else []
            )
            self._limits_cache = dict(rows)
        return {**self._limits_cache, **self._pending_limits}

    def limits_all(self) -> dict[str, int]:
        """Every registered meter's limit on this plan."""
        return {spec.code: self.limit_for(spec.code) for spec in meter_specs()}

    def limit_for(self, meter: str) -> int:
        """The plan's limit on ``meter``: its PlanLimit row, else the meter's declared default for this plan's
        code, else 0 (the meter is not on this plan)."""
        spec = meter_spec(meter)
        limits = self.limits()
        return limits[spec.code] if spec.code in limits else spec.limits.get(self.code, 0)


class PlanLimit(models.Model):
    """A plan's limit on one meter (per month for flow meters, at any time for stock meters)."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="limit_rows")
    meter = models.ForeignKey(
        MeterDefinition, to_field="code", db_column="meter", on_delete=models.PROTECT, related_name="+"
    )
    limit = models.PositiveBigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plan", "meter"], name="uniq_plan_limit")]

    def __str__(self) -> str:
        return f"{self.plan_id}: {self.meter_id} <= {self.limit}"


def plan_limits_write(plan_id: int, limits: dict[str, int]) -> None:
    """Set a plan's limits (meter code -> limit), writing only what changed."""
    codes = [meter_spec(code).code for code in limits]
    if MeterDefinition.objects.filter(code__in=codes).count() < len(set(codes)):
        meters_sync()
    current = dict(PlanLimit.objects.filter(plan_id=plan_id).values_list("meter_id", "limit"))
    for code, value in limits.items():
        code = str(code)
        if current.get(code) != value:
            PlanLimit.objects.update_or_create(plan_id=plan_id, meter_id=code, defaults={"limit": value})


class SubscriptionStatus(models.TextChoices):
    TRIALING = "trialing", "Trial"
    ACTIVE = "active", "Active"
    CANCELLED = "cancelled", "Cancelled"


class Subscription(TimeStampedModel):
    organisation = models.OneToOneField("tenancy.Organisation", on_delete=models.CASCADE, related_name="+")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(max_length=16, choices=SubscriptionStatus.choices)
    started_at = models.DateTimeField()
    trial_ends_at = models.DateTimeField(null=True, blank=True)


class UsageEventQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: ANN003 - Django signature
        raise RuntimeError("the usage ledger is append-only")

    def delete(self):
        raise RuntimeError("the usage ledger is append-only")


def meter_label(code: str) -> str:
    try:
        return meter_spec(code).label
    except InvalidInput:
        return code


class UsageEvent(TenantModel):
    """One line of the ledger. Never updated or deleted; corrections are new negative lines."""

    meter = models.CharField(max_length=32)  # a MeterDefinition code
    quantity = models.DecimalField(max_digits=14, decimal_places=3)
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    api_key = models.ForeignKey(
        "tenancy.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    metadata = models.JSONField(default=dict, blank=True)

    ledger = UsageEventQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "idempotency_key"], name="uniq_usage_idempotency"
            ),
        ]
        indexes = [models.Index(fields=["organisation", "meter", "created_at"])]

    @property
    def meter_label(self) -> str:
        """The meter's label as declared (the code itself for a meter no longer declared)."""
        return meter_label(self.meter)

    def get_meter_display(self) -> str:  # the name Django gave it while ``meter`` had fixed choices
        return self.meter_label

    def save(self, *args, **kwargs):  # noqa: ANN002, ANN003
        if self.pk is not None:
            raise RuntimeError("the usage ledger is append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):  # noqa: ANN002, ANN003
        raise RuntimeError("the usage ledger is append-only")


class UsageCounter(TenantModel):
    """The running total of one flow meter for one billing period, kept in step with the ledger.

    ``usage_record`` adds to it in the same transaction as the ledger line, through a conditional UPDATE that
    is also the quota check, so enforcing a limit reads one row instead of summing the month's ledger and
    concurrent callers queue on this row only (not on the whole organisation).
    """

    meter = models.CharField(max_length=32)  # a MeterDefinition code
    period = models.CharField(max_length=7)  # "YYYY-MM", UTC calendar month
    used = models.DecimalField(max_digits=18, decimal_places=3, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "meter", "period"], name="uniq_usage_counter"),
        ]


class IdempotencyRecord(TenantModel):
    """One ``Idempotency-Key`` of an organisation: the request it was first sent with, and the answer.

    While the first request runs, ``status_code`` is null (a duplicate that arrives then gets 409); once it
    has answered, a retry with the same request gets the stored answer back and runs nothing, and the same
    key with a different request is refused. Rows expire after a day (``idempotency_sweep``).
    """

    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)  # sha256 of method, path, caller and body
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response = models.JSONField(null=True, blank=True, encoder=DjangoJSONEncoder)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "key"], name="uniq_idempotency_key"),
        ]


def meters_sync_after_migrate(*, using: str = "default", **_kwargs: object) -> None:
    """``post_migrate``: mirror the meters once the table exists (not after migrating back before it)."""
    if MeterDefinition._meta.db_table in connections[using].introspection.table_names():
        meters_sync()


def meters_sync(**_kwargs: object) -> None:
    """Mirror the registered meters into ``MeterDefinition`` (``post_migrate``; plan-limit writes).

    Kind, unit and label follow the declaration; a meter no longer declared keeps its row (its ledger lines
    still name it). Plan limits are not written here: a plan without a ``PlanLimit`` row for a meter uses
    the declared default, so an operator's edited limit is never overwritten by a restart.
    """
    existing = {m.code: m for m in MeterDefinition.objects.all()}
    for spec in meter_specs():
        row = existing.get(spec.code)
        values = {"kind": spec.kind, "unit": spec.unit, "label": spec.label}
        if row is None:
            MeterDefinition.objects.get_or_create(code=spec.code, defaults=values)
        elif any(getattr(row, k) != v for k, v in values.items()):
            MeterDefinition.objects.filter(pk=row.pk).update(**values)
