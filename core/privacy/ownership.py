"""Which tables and folders hold an organisation's data: core's, then each product's (``owned_models``).

Export, import and deletion walk this list, so a product that declares its models is covered with no core
edit. Tables that carry an organisation but that no one declared (a product that forgot) are appended after
the declared ones, so deletion still removes their rows and the export still carries them.
"""

from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.db import models

from core.products import products

# Parents before children (the order an import re-creates them in).
CORE_OWNED = (
    "tenancy.Membership",
    "tenancy.Invitation",
    "tenancy.ApiKey",
    "billing.Subscription",
    "billing.UsageCounter",
    "billing.UsageEvent",
    "billing.IdempotencyRecord",
    "jobs.TrainingJob",
    "registry.Dataset",
    "registry.ModelVersion",
    "privacy.AuditEvent",
    "privacy.OrganisationKey",
)
# Never written to an archive: the organisation's wrapped data key, and the deletion record.
NOT_EXPORTED = frozenset({"privacy.OrganisationKey", "privacy.OrganisationDeletion"})
# Fields that hold secrets (hashes of credentials, wrapped keys): left out of every archive.
SECRET_FIELDS = frozenset({"secret_hash", "token_hash", "wrapped_key", "password"})
# Exported (the customer's own record) but not re-created by an import (``core.privacy.importing``):
# people and their credentials belong to the importing organisation's owner (members, invitations, API
# keys); the plan, its counters and the billing ledger are the new organisation's own (the old ledger is
# history of another subscription: importing it would charge the new plan for usage it never had, and the
# ledger is append-only); idempotency records and jobs were the old server's work in progress (the models
# and files the jobs made are imported); the audit log tells who did what in the old organisation, and the
# new one starts its own with the import's line.
NOT_IMPORTED = frozenset(
    {
        "tenancy.Membership",
        "tenancy.Invitation",
        "tenancy.ApiKey",
        "billing.Subscription",
        "billing.UsageCounter",
        "billing.UsageEvent",
        "billing.IdempotencyRecord",
        "jobs.TrainingJob",
        "privacy.AuditEvent",
    }
)
# Stores copied into an archive (the exports folder is not: it holds earlier archives and CSV downloads).
EXPORTED_STORES = ("models", "datasets")
# Stores whose first folder under the organisation's folder is named by a row's id (``dataset_dir``): an
# import renames it to the id the row gets in the new organisation.
STORE_ID_FOLDERS = {"datasets": "registry.Dataset"}


def _label(model: type[models.Model]) -> str:
    return f"{model._meta.app_label}.{model.__name__}"


def organisation_field(model: type[models.Model]) -> str | None:
    """The name of the model's foreign key (or one-to-one) to the organisation, if it has one."""
    for field in model._meta.concrete_fields:
        related = field.related_model if field.is_relation else None
        if related is not None and _label(related) == "tenancy.Organisation":
            return field.name
    return None


def declared_models() -> list[str]:
    return [*CORE_OWNED, *(name for p in products() for name in p.owned_models)]


def owned_models() -> list[type[models.Model]]:
    """Every table with rows of an organisation: declared first (in order), then undeclared ones."""
    out = [apps.get_model(name) for name in dict.fromkeys(declared_models())]
    seen = set(out)
    for model in apps.get_models():
        if model not in seen and organisation_field(model) and _label(model) not in NOT_EXPORTED:
            out.append(model)
    return out


def undeclared_models() -> list[str]:
    """Tables with an organisation that neither core nor a product declares (the tests keep this empty for
    the products they know)."""
    declared = set(declared_models()) | NOT_EXPORTED
    return [_label(m) for m in apps.get_models() if organisation_field(m) and _label(m) not in declared]


def rows_of(model: type[models.Model], organisation_id: int) -> models.QuerySet:
    """All rows of ``model`` that belong to the organisation (the base manager: platform-wide job)."""
    field = organisation_field(model)
    return model._base_manager.filter(**{f"{field}_id": organisation_id}).order_by("pk")


def store_roots() -> dict[str, Path]:
    """The stores that keep one folder per organisation (``core.storage.org_path`` roots)."""
    return {
        "models": Path(settings.MODEL_STORE),
        "datasets": Path(settings.DATASET_STORE),
        "exports": Path(settings.VAR_DIR) / "exports",
    }


label = _label
