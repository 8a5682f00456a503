"""The audit log: one writer (``audit_record``), one reader (``audit_event_list``).

Services that change who may do what or what serves (API keys, members' roles, plans, forced promotions and
rollbacks, exports, deletions) call ``audit_record`` inside their own transaction, so a line exists exactly
when the change committed. Owners read the log (``org.audit``).
"""

from typing import Any

from django.db.models import QuerySet

from core.privacy.models import AuditEvent


class Action:
    API_KEY_CREATE = "api_key.create"
    API_KEY_REVOKE = "api_key.revoke"
    MEMBER_ROLE_CHANGE = "member.role_change"
    MEMBER_REMOVE = "member.remove"
    PLAN_CHANGE = "plan.change"
    MODEL_FORCE_PROMOTE = "model.force_promote"
    MODEL_ROLLBACK = "model.rollback"
    ORG_EXPORT = "organisation.export"
    ORG_IMPORT = "organisation.import"
    ORG_DELETE = "organisation.delete"


def _actor_fields(actor: Any) -> dict[str, Any]:
    """A person (a User) or a machine (an ApiKey) or nobody (a command, a job)."""
    from core.tenancy.models import ApiKey, User

    if isinstance(actor, User):
        return {"actor": actor, "actor_email": actor.email}
    if isinstance(actor, ApiKey):
        return {"actor_key": actor.prefix}
    return {}


def audit_record(
    *, organisation, action: str, actor: Any = None, target: str = "", details: dict[str, Any] | None = None
) -> AuditEvent:
    return AuditEvent.all_tenants.create(
        organisation=organisation,
        action=action,
        target=target[:200],
        details=details or {},
        **_actor_fields(actor),
    )


def audit_event_list(*, organisation, action: str | None = None) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.for_org(organisation).order_by("-created_at", "-id")
    return qs.filter(action=action) if action else qs


def audit_actions() -> list[str]:
    return sorted(v for k, v in vars(Action).items() if k.isupper())
