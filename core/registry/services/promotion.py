"""Which version serves: promotion only when a challenger beats the active version on the same
held-out rows (or an admin forces it), one-action rollback, and archiving."""

import logging

from django.db import transaction
from django.utils import timezone

from core.errors import Conflict, InvalidInput, NotFound
from core.privacy.audit import Action, audit_record
from core.products import model_task, products
from core.registry.kinds import kind_of
from core.registry.models import ModelVersion, VersionStatus
from core.registry.services.common import SERVABLE, active_version
from core.registry.services.serving import loaded_model
from core.registry.services.warmup import version_warm_on_commit

log = logging.getLogger(__name__)


def _activate(challenger: ModelVersion, note: str) -> None:
    ModelVersion.objects.for_org(challenger.organisation).filter(
        app=challenger.app, task=challenger.task, status=VersionStatus.ACTIVE
    ).update(status=VersionStatus.READY)
    challenger.status, challenger.promoted_at, challenger.promotion_note = (
        VersionStatus.ACTIVE,
        timezone.now(),
        note,
    )
    challenger.save(update_fields=["status", "promoted_at", "promotion_note", "updated_at"])
    version_warm_on_commit(version_id=challenger.pk)  # loaded here before its first request
    _tell_product_on_commit(challenger)


def _tell_product_on_commit(version: ModelVersion) -> None:
    """Once the activation commits, the product's ``ModelTask.on_activate`` for the version's task, if any."""
    spec = model_task(version.app, version.task)
    hook = spec.on_activate if spec is not None else None
    if hook is None:
        return

    def tell() -> None:
        try:
            hook(organisation=version.organisation, version=version)
        except Exception:  # noqa: BLE001 - the activation stands; the product's beat catches up
            log.exception("%s/%s: on_activate failed for version %s", version.app, version.task, version.pk)

    transaction.on_commit(tell)


def _held_out_score(version: ModelVersion, held_out) -> tuple[float, str]:
    """The promotion metric of a version on held-out rows, as its kind scores it (classifiers: accuracy,
    embedders: MRR)."""
    return kind_of(version).score(model=loaded_model(version=version), rows=held_out)


def _keep(challenger: ModelVersion, note: str) -> tuple[bool, str]:
    ModelVersion.all_tenants.filter(pk=challenger.pk).update(promotion_note=note)
    return False, note


def model_promote_if_better(*, organisation, version_id: int, held_out) -> tuple[bool, str]:
    """Activate the challenger only if it beats the active version on the same held-out rows."""
    challenger = ModelVersion.objects.for_org(organisation).get(pk=version_id)
    active = active_version(organisation, challenger.app, challenger.task)
    if active is None:
        note = "first version: activated"
    elif active.kind != challenger.kind:
        return _keep(challenger, f"kept v{active.version}: it is a different kind of model; promote by hand")
    else:
        incumbent, metric = _held_out_score(active, held_out)
        mine, _ = _held_out_score(challenger, held_out)
        if mine <= incumbent:
            return _keep(
                challenger,
                f"kept v{active.version}: {incumbent:.4f} >= {mine:.4f} {metric} on the same held-out rows",
            )
        note = f"beat v{active.version}: {mine:.4f} > {incumbent:.4f} {metric} on the same held-out rows"
    with transaction.atomic():
        _activate(ModelVersion.objects.for_org(organisation).select_for_update().get(pk=version_id), note)
    return True, note


@transaction.atomic
def model_promote(
    *, organisation, version_id: int, force: bool = False, actor: object = None
) -> ModelVersion:
    version = ModelVersion.objects.for_org(organisation).select_for_update().filter(pk=version_id).first()
    if version is None:
        raise NotFound("No such model version.")
    if version.status not in SERVABLE:
        raise Conflict(f"A {version.status} version cannot be promoted.")
    if version.status == VersionStatus.ACTIVE:
        raise Conflict("This version is already active.")
    if not force:
        raise InvalidInput(
            "Promotion by hand must be forced (force=true); automatic promotion compares accuracy."
        )
    _activate(version, "forced by an admin")
    audit_record(
        organisation=organisation,
        action=Action.MODEL_FORCE_PROMOTE,
        actor=actor,
        target=f"model_version:{version.pk}",
        details={"app": version.app, "task": version.task, "version": version.version},
    )
    return version


@transaction.atomic
def rollback_target(active: ModelVersion) -> ModelVersion | None:
    """The version a rollback from the active ``active`` re-activates: the most recently promoted before it
    (None: there is none, and the model page offers no rollback)."""
    return (
        ModelVersion.objects.for_org(active.organisation_id)
        .filter(app=active.app, task=active.task, status=VersionStatus.READY, promoted_at__isnull=False)
        .exclude(pk=active.pk)
        .order_by("-promoted_at")
        .first()
    )


def model_rollback(*, organisation, app: str, task: str, actor: object = None) -> ModelVersion:
    """Re-activate the most recently promoted version before the active one."""
    active = active_version(organisation, app, task)
    if active is None:
        raise Conflict("Nothing is active to roll back.")
    previous = rollback_target(active)
    if previous is None:
        raise Conflict("There is no earlier promoted version to roll back to.")
    active.status = VersionStatus.READY
    active.promoted_at = None
    active.save(update_fields=["status", "promoted_at", "updated_at"])
    previous.status, previous.promotion_note = VersionStatus.ACTIVE, f"rolled back from v{active.version}"
    previous.save(update_fields=["status", "promotion_note", "updated_at"])
    version_warm_on_commit(version_id=previous.pk)
    _tell_product_on_commit(previous)
    audit_record(
        organisation=organisation,
        action=Action.MODEL_ROLLBACK,
        actor=actor,
        target=f"model_version:{previous.pk}",
        details={"app": app, "task": task, "from": active.version, "to": previous.version},
    )
    return previous


@transaction.atomic
def model_archive(*, organisation, version_id: int) -> ModelVersion:
    version = ModelVersion.objects.for_org(organisation).select_for_update().filter(pk=version_id).first()
    if version is None:
        raise NotFound("No such model version.")
    if version.status == VersionStatus.ACTIVE:
        raise Conflict("The active version cannot be archived; promote or roll back first.")
    for product in products():
        in_use = product.version_in_use and product.version_in_use(organisation=organisation, version=version)
        if in_use:
            raise Conflict(f"Version {version.version} cannot be archived: {in_use}")
    version.status = VersionStatus.ARCHIVED
    version.save(update_fields=["status", "updated_at"])
    return version
