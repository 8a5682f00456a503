"""Deleting an organisation with everything it owns (``organisation_delete``).

What goes: every row of the organisation in every installed app (``core.privacy.ownership.owned_models``:
core's tables, each product's declared ``owned_models``, and any other table with a foreign key to the
organisation), its folders under every store root (models, datasets and batch files, exports), its wrapped
data key (so any copy of its encrypted files left in a backup can no longer be read: crypto-shredding), its
memberships, invitations and API keys, its audit log, and the people who belonged to it and to no other
organisation (staff accounts are kept; they only lose the membership).

What stays: the ``Organisation`` row as an anonymised tombstone (name and slug replaced, ``deleted_at`` set;
nobody belongs to it, so no page or key reaches it), one ``OrganisationDeletion`` row (when, the deleting
person's role only, counts per table and of files), and the billing ledger (``UsageEvent``) with its API key
set null, its client-chosen idempotency key cleared and its metadata reduced to the platform's own
non-personal fields (job, model version, conversation ids, method, status; request paths are dropped).

The audit line of the deletion is not kept: the audit log names people, and it goes with the rest. The
``OrganisationDeletion`` row is the lasting record.

Rows are deleted synchronously in one transaction (children before parents); files are removed after it
commits (a failure there leaves ``finished_at`` unset on the record, and the rows already gone).
"""

import json
import shutil
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import Conflict, InvalidInput
from core.privacy import crypto
from core.privacy.models import OrganisationDeletion
from core.privacy.ownership import label, owned_models, rows_of, store_roots
from core.storage import org_path

# The ledger's metadata keys the platform writes itself and that hold no personal data (ids and codes).
# Everything else (request paths, anything a product adds later) is dropped from a deleted organisation's
# ledger lines.
LEDGER_METADATA_KEPT = frozenset(
    {"job", "kind", "model_version", "conversation", "refund", "method", "status"}
)


def _scrub_metadata(metadata: Any) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        return {}
    return {
        k: v
        for k, v in metadata.items()
        if k in LEDGER_METADATA_KEPT
        and (v is None or isinstance(v, bool | int | float) or k in {"kind", "method"})
    }


def _anonymise_ledger(organisation_id: int) -> int:
    """The one place that rewrites ledger lines, inside the deletion's transaction: the ledger's queryset
    refuses ``update`` (this goes through the base manager's plain queryset, for this organisation's lines
    only) and on PostgreSQL its trigger refuses any UPDATE unless ``trellis.ledger_anonymise`` is on for the
    transaction, and then lets through changes to the API key, idempotency key and metadata only
    (``core/billing/migrations/0008_ledger_anonymise_exception.py``)."""
    from core.billing.models import UsageEvent

    lines = UsageEvent._base_manager.filter(organisation_id=organisation_id)
    groups: dict[str, list[int]] = {}
    for pk, metadata in lines.values_list("pk", "metadata").iterator():
        groups.setdefault(json.dumps(_scrub_metadata(metadata), sort_keys=True), []).append(pk)
    connection = transaction.get_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL trellis.ledger_anonymise = 'on'")
    try:
        for metadata, pks in groups.items():
            UsageEvent._base_manager.filter(pk__in=pks).update(
                api_key=None, idempotency_key=None, metadata=json.loads(metadata)
            )
    finally:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL trellis.ledger_anonymise = 'off'")
    return sum(len(pks) for pks in groups.values())


def _store_folders(organisation_id: int) -> list:
    return [org_path(root, organisation_id) for root in store_roots().values()]


def _remove_files(organisation_id: int) -> int:
    removed = 0
    for folder in _store_folders(organisation_id):
        if folder.exists():
            removed += sum(1 for p in folder.rglob("*") if p.is_file() or p.is_symlink())
            shutil.rmtree(folder)
    crypto.forget_key(organisation_id)
    crypto.forget_plaintext(f"{organisation_id}:")
    return removed


def _drain_deferred_ledger() -> None:
    """Write the metered lines still in the Redis stream first, so they are kept (anonymised) like the rest;
    lines that arrive later for the deleted organisation are dropped by the flusher."""
    from core.billing import deferred

    if deferred.enabled():
        from core.billing.flusher import ledger_drain

        ledger_drain(claim_idle_ms=0)


def organisation_delete(*, organisation, actor, confirm_name: object) -> OrganisationDeletion:
    """Delete ``organisation`` and everything it owns; ``confirm_name`` must be its name, exactly."""
    from core.billing.models import UsageEvent
    from core.tenancy.models import GenerationToken, Membership, Organisation, User
    from core.tenancy.services import api_key_cache_clear

    if organisation.deleted_at is not None:
        raise Conflict("This organisation has already been deleted.")
    if not isinstance(confirm_name, str) or confirm_name != organisation.name:
        raise InvalidInput(
            f'To delete the organisation, type its name exactly as shown ("{organisation.name}"); '
            "the name typed does not match, so nothing was deleted."
        )
    org_id = organisation.pk
    role = ""
    if isinstance(actor, User):
        membership = Membership.all_tenants.filter(organisation_id=org_id, user=actor).first()
        role = membership.role if membership else ""

    _drain_deferred_ledger()
    with transaction.atomic():
        org = Organisation.objects.select_for_update().get(pk=org_id)
        if org.deleted_at is not None:
            raise Conflict("This organisation has already been deleted.")
        member_ids = list(
            Membership.all_tenants.filter(organisation_id=org_id).values_list("user_id", flat=True)
        )
        kept_lines = _anonymise_ledger(org_id)
        models = [m for m in owned_models() if m is not UsageEvent]
        counts = {label(m): rows_of(m, org_id).count() for m in models}
        for model in reversed(models):  # owned_models lists parents before children
            rows_of(model, org_id).order_by().delete()
        # without Redis the deletions above bumped their scopes' tokens (core.generations): rows of no use
        GenerationToken.objects.filter(organisation_id=org_id).delete()
        leavers = (
            User.objects.filter(pk__in=member_ids)
            .exclude(Q(is_staff=True) | Q(is_superuser=True))
            .exclude(memberships__isnull=False)
        )
        users_deleted = leavers.count()
        leavers.delete()
        now = timezone.now()
        org.name = f"deleted organisation {org_id}"
        org.slug = f"deleted-{org_id}"
        org.deleted_at = now
        org.save(update_fields=["name", "slug", "deleted_at", "updated_at"])
        record = OrganisationDeletion.objects.create(
            organisation=org,
            removed={
                "rows": {k: v for k, v in counts.items() if v},
                "users_deleted": users_deleted,
                "ledger_lines_kept": kept_lines,
                "by_role": role,
            },
        )
    api_key_cache_clear()
    files = _remove_files(org_id)  # an OSError leaves finished_at unset: the record shows it did not finish
    record.removed = {**record.removed, "files": files}
    record.finished_at = timezone.now()
    record.save(update_fields=["removed", "finished_at", "updated_at"])
    organisation.refresh_from_db()
    return record
