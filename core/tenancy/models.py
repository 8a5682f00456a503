"""Organisations (tenants), their people, invitations and API keys."""

from django.contrib.auth.models import AbstractUser
from django.db import models

from core.base_models import TenantModel, TimeStampedModel


class User(AbstractUser):
    """A person. Signs in with an e-mail address (kept in ``username`` too, lower-cased)."""

    email = models.EmailField(unique=True)


class Organisation(TimeStampedModel):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    # Set by ``core.privacy.services.organisation_delete``: the row stays as an anonymised tombstone (the
    # ledger keeps its foreign key); nobody belongs to it and no page or key reaches it.
    deleted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


class Membership(TenantModel):
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "user"], name="uniq_membership"),
        ]


class Invitation(TenantModel):
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)


class ApiKey(TenantModel):
    """A machine credential. Only a SHA-256 of the secret is stored; the prefix identifies it."""

    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)


class GenerationToken(models.Model):
    """``core.generations``' token of one scope of an organisation where there is no Redis (the embedded
    default): written in the transaction of the change it stands for, read by every process. The
    organisation's id is not a foreign key: a row deleted with its organisation bumps its scope in that
    deletion's transaction, after the organisation's dependants were collected; a token left behind is
    harmless (random, and read under a new organisation's creation time)."""

    organisation_id = models.BigIntegerField()
    scope = models.CharField(max_length=64)
    token = models.CharField(max_length=32)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation_id", "scope"], name="uniq_generation_token")
        ]

    def __str__(self) -> str:
        return f"{self.organisation_id}:{self.scope}"
