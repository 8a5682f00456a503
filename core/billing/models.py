"""Plans, subscriptions and the append-only usage ledger."""

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models

from core.base_models import TenantModel, TimeStampedModel


class Meter(models.TextChoices):
    # Flow meters: summed from the ledger over the current month.
    PREDICTIONS = "predictions", "Predictions"
    TRAINING_JOBS = "training_jobs", "Training jobs"
    GPU_MINUTES = "gpu_minutes", "GPU minutes"
    API_CALLS = "api_calls", "API calls"
    # Stock meters: counted from the current state.
    MODELS = "models", "Models"
    SEATS = "seats", "Seats"
    STORED_RECORDS = "stored_records", "Stored records"


FLOW_METERS = (Meter.PREDICTIONS, Meter.TRAINING_JOBS, Meter.GPU_MINUTES, Meter.API_CALLS)
STOCK_METERS = (Meter.MODELS, Meter.SEATS, Meter.STORED_RECORDS)


class Plan(TimeStampedModel):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=60)
    price_cents = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, default="EUR")
    trial_days = models.PositiveIntegerField(null=True, blank=True)
    is_public = models.BooleanField(default=True)
    predictions_per_month = models.PositiveIntegerField()
    training_jobs_per_month = models.PositiveIntegerField()
    gpu_minutes_per_month = models.PositiveIntegerField()
    api_calls_per_month = models.PositiveIntegerField()
    max_models = models.PositiveIntegerField()
    max_seats = models.PositiveIntegerField()
    max_stored_records = models.PositiveIntegerField()
    requests_per_minute = models.PositiveIntegerField()

    class Meta:
        ordering = ["price_cents"]

    def __str__(self) -> str:
        return self.name

    def limit_for(self, meter: str) -> int:
        return {
            Meter.PREDICTIONS: self.predictions_per_month,
            Meter.TRAINING_JOBS: self.training_jobs_per_month,
            Meter.GPU_MINUTES: self.gpu_minutes_per_month,
            Meter.API_CALLS: self.api_calls_per_month,
            Meter.MODELS: self.max_models,
            Meter.SEATS: self.max_seats,
            Meter.STORED_RECORDS: self.max_stored_records,
        }[Meter(meter)]


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


class UsageEvent(TenantModel):
    """One line of the ledger. Never updated or deleted; corrections are new negative lines."""

    meter = models.CharField(max_length=32, choices=Meter.choices)
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

    meter = models.CharField(max_length=32, choices=Meter.choices)
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
