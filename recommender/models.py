"""The recommender's data: the catalogue (items), behaviour (events) and each organisation's settings.

Items and events are named by the tenant's own ids (``external_id``); the database ids never leave the
service layer except as foreign keys. An event's ``external_id`` makes ingestion idempotent: the same event
sent twice is stored once.
"""

from django.db import models

from core.base_models import TenantManager, TenantModel


class Item(TenantModel):
    """One catalogue entry. Deleted items stay (their events keep pointing at them) but are never served."""

    external_id = models.CharField(max_length=200)
    title = models.CharField(max_length=500)
    description = models.TextField(blank=True, default="")
    categories = models.JSONField(default=list, blank=True)  # list of strings
    price = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    available = models.BooleanField(default=True)
    expires_at = models.DateTimeField(null=True, blank=True)  # not served from then on (a time-to-live)
    attributes = models.JSONField(default=dict, blank=True)
    deleted = models.BooleanField(default=False)
    # The text vector (``recommender.services.text``, the platform's vector index): null until the embedding
    # job has run for the item's current text; ``embedder`` names the model that made it ("" until then).
    vector = models.BinaryField(null=True, blank=True)
    embedder = models.CharField(max_length=80, blank=True, default="")

    class Meta:
        ordering = ["external_id"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "external_id"], name="uniq_reco_item_external_id")
        ]


class EventType(models.TextChoices):
    VIEW = "view", "View"
    CLICK = "click", "Click"
    ADD_TO_CART = "add_to_cart", "Add to cart"
    PURCHASE = "purchase", "Purchase"
    RATING = "rating", "Rating"


# What an event counts for in a user's history when the organisation has set nothing (a rating counts its
# weight times its value / 5).
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    EventType.VIEW: 1.0,
    EventType.CLICK: 2.0,
    EventType.ADD_TO_CART: 3.0,
    EventType.PURCHASE: 5.0,
    EventType.RATING: 5.0,
}


class Event(TenantModel):
    """One thing a user did with an item, at ``occurred_at``."""

    external_id = models.CharField(max_length=200)
    user = models.CharField(max_length=200)  # the tenant's user id (no account of ours)
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="+")
    type = models.CharField(max_length=16, choices=EventType.choices)
    value = models.FloatField(null=True, blank=True)  # a rating's value, a purchase's quantity
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "external_id"], name="uniq_reco_event_external_id"
            )
        ]
        indexes = [models.Index(fields=["organisation", "user", "occurred_at"], name="reco_event_user_time")]


class RecommenderSettings(TenantModel):
    """Per-organisation settings: the weight of each event type (missing types take the default), the
    default diversity of an answer (at most ``max_per_category`` items of a category; null: no limit), and
    the catalogue's version (what serving's cached catalogue is checked against)."""

    event_weights = models.JSONField(default=dict, blank=True)
    max_per_category = models.PositiveSmallIntegerField(null=True, blank=True)
    # one more at every catalogue write (``services.snapshot``): serving's in-memory catalogue is rebuilt when
    # it differs
    catalogue_version = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation"], name="uniq_reco_settings_org")]


class ExperimentStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Experiment(TenantModel):
    """An A/B test between two of the organisation's recommender versions (``services.experiments``).

    While it runs, each user (or anonymous session) is served by arm B with probability ``share_b``, decided
    by a stable hash of (experiment id, user id); every answer served under it leaves an ``Impression``."""

    name = models.CharField(max_length=120)
    version_a = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="+")
    version_b = models.ForeignKey("registry.ModelVersion", on_delete=models.PROTECT, related_name="+")
    share_b = models.FloatField(default=0.5)  # the share of users served by version_b
    window_hours = models.PositiveIntegerField(default=24)  # feedback counts for an impression this long
    status = models.CharField(max_length=16, choices=ExperimentStatus.choices, default=ExperimentStatus.DRAFT)
    started_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # impressions pruned past the retention (``services.experiments.impressions_prune``), counted per arm:
    # {"A": {"n": .., "clicks": .., "conversions": ..}, "B": ...}; the results add them to the rows left
    pruned = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation"],
                condition=models.Q(status="running"),
                name="reco_one_running_experiment",
            ),
            models.CheckConstraint(
                condition=models.Q(share_b__gt=0) & models.Q(share_b__lt=1), name="reco_experiment_share"
            ),
        ]  # two different versions: checked by experiment_create (core's deletion test fills FKs alike)


class Impression(models.Model):
    """What one answer served under an experiment showed: one lean row per response (no updated_at, one
    index), marked ``clicked`` / ``converted`` when the subject's feedback on one of its items arrives within
    the experiment's window (``services.experiments.feedback_attribute``)."""

    # no index of its own: the (organisation, subject, served_at) index starts with it
    organisation = models.ForeignKey(
        "tenancy.Organisation", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="+")
    arm = models.CharField(max_length=1)  # "A" | "B"
    subject = models.CharField(max_length=200)  # the user id, or an anonymous session's id
    items = models.JSONField(default=list)  # the served item ids, in order
    served_at = models.DateTimeField()
    clicked = models.BooleanField(default=False)  # a click, add-to-cart or purchase of a served item
    converted = models.BooleanField(default=False)  # a purchase of a served item

    all_tenants = models.Manager()
    objects = TenantManager()

    class Meta:
        ordering = ["served_at", "id"]
        indexes = [
            models.Index(fields=["organisation", "subject", "served_at"], name="reco_impression_subject")
        ]

    def __str__(self) -> str:
        return f"impression {self.pk} ({self.arm})"
