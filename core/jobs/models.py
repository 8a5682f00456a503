"""Background jobs (training, batch inference, ingestion) and their observable state.

The row is the truth: workers write progress here, pages poll it; websockets only speed it up.
"""

from django.db import models

from core.base_models import TenantModel


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class TrainingJob(TenantModel):
    kind = models.CharField(max_length=64)
    app = models.CharField(max_length=32, default="core")
    queue = models.CharField(max_length=16, default="train")
    status = models.CharField(
        max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=300, blank=True, default="")
    metrics = models.JSONField(default=dict, blank=True)  # latest step, loss, validation metric, ETA
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    device = models.CharField(max_length=32, blank=True, default="")
    gpu_seconds = models.FloatField(default=0.0)
    error = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        "tenancy.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    worker = models.CharField(max_length=200, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(progress__gte=0) & models.Q(progress__lte=1), name="job_progress_0_1"
            ),
        ]

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES
