"""The model registry: every trained model version of every tenant, app and task."""

from django.db import models

from core.base_models import TenantModel


class VersionStatus(models.TextChoices):
    TRAINING = "training", "Training"
    READY = "ready", "Ready"  # trained and evaluated, not serving
    ACTIVE = "active", "Active"  # the one that serves predictions for its app/task
    ARCHIVED = "archived", "Archived"
    FAILED = "failed", "Failed"


class ModelVersion(TenantModel):
    app = models.CharField(max_length=32)
    task = models.CharField(max_length=64)  # e.g. "intent", "sentiment", "topic"
    version = models.PositiveIntegerField()
    # What the model is (core.registry.kinds): its kind trains, scores, loads and serves it. Not a choice
    # field: products register kinds of their own. Rows made before kinds existed are all classifiers.
    kind = models.CharField(max_length=32, default="classifier")
    status = models.CharField(max_length=16, choices=VersionStatus.choices, default=VersionStatus.TRAINING)
    method = models.CharField(max_length=16, blank=True, default="")  # head | lora | full
    metrics = models.JSONField(default=dict, blank=True)
    manifest = models.JSONField(default=dict, blank=True)
    artifact_path = models.CharField(max_length=500, blank=True, default="")
    labels = models.JSONField(default=list, blank=True)
    data_fingerprint = models.CharField(max_length=64, blank=True, default="")
    dataset = models.ForeignKey(
        "registry.Dataset", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    training_job = models.ForeignKey(
        "jobs.TrainingJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    quantized = models.BooleanField(default=False)  # serve the int8 path (it passed the accuracy gate)
    quantization = models.JSONField(default=dict, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    promotion_note = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "app", "task", "version"], name="uniq_model_version"
            ),
            models.UniqueConstraint(
                fields=["organisation", "app", "task"],
                condition=models.Q(status="active"),
                name="one_active_version",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.app}/{self.task} v{self.version}"


class Dataset(TenantModel):
    """An uploaded, validated, scrubbed and split dataset version (rows are stored as a JSON file)."""

    name = models.CharField(max_length=120)
    task = models.CharField(max_length=32)  # classification | pairs
    version = models.PositiveIntegerField()
    fingerprint = models.CharField(max_length=64)
    row_count = models.PositiveIntegerField()
    rejected_count = models.PositiveIntegerField(default=0)
    labels = models.JSONField(default=list, blank=True)
    split_counts = models.JSONField(default=dict, blank=True)
    path = models.CharField(max_length=500)
    report_path = models.CharField(max_length=500, blank=True, default="")
    source_filename = models.CharField(max_length=255, blank=True, default="")
    # rows the platform ships (a product's default training set, made for the organisation without asking),
    # not the organisation's own: not counted in its stored records
    shipped = models.BooleanField(default=False)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "name", "version"], name="uniq_dataset_version"),
        ]
