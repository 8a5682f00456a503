"""The audit log, organisations' wrapped encryption keys, and the record a deletion leaves."""

from django.db import models

from core.base_models import TenantModel, TimeStampedModel


class AuditEvent(TenantModel):
    """Who did what in an organisation. Written only by ``core.privacy.audit.audit_record``.

    ``actor_email`` is copied (not only linked) so the line still says who acted once the person is gone;
    ``actor_key`` names an API key by its prefix when a machine acted.
    """

    action = models.CharField(max_length=64, db_index=True)  # "<area>.<verb>", e.g. "api_key.create"
    actor = models.ForeignKey(
        "tenancy.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_email = models.CharField(max_length=254, blank=True, default="")
    actor_key = models.CharField(max_length=16, blank=True, default="")
    target = models.CharField(max_length=200, blank=True, default="")  # e.g. "api_key:12"
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organisation", "created_at"])]


class OrganisationKey(TimeStampedModel):
    """An organisation's data key, wrapped (Fernet) by the master key from ``TRELLIS_MASTER_KEY``."""

    organisation = models.OneToOneField("tenancy.Organisation", on_delete=models.CASCADE, related_name="+")
    wrapped_key = models.TextField()


class OrganisationDeletion(TimeStampedModel):
    """What is left of a deleted organisation besides its anonymised ledger: when, and what was removed.

    No personal data: counts per table and of files, and the job id. The organisation row itself stays as an
    anonymised tombstone (name and slug replaced) so the ledger's lines keep their foreign key.
    """

    organisation = models.OneToOneField("tenancy.Organisation", on_delete=models.CASCADE, related_name="+")
    job_id = models.PositiveIntegerField(null=True, blank=True)
    removed = models.JSONField(default=dict, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
