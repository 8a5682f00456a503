"""Who may call what. People: their role in the current organisation. Machines: their key's scopes."""

from rest_framework import permissions

from core.products import product_permissions
from core.tenancy.middleware import current_membership
from core.tenancy.models import ApiKey
from core.tenancy.roles import role_can

# The key scope that grants each of core's permissions to a machine (None: people only); products declare
# the scope of theirs (core.products.ProductPermission.scope).
PERMISSION_SCOPE: dict[str, str | None] = {
    "org.view": "read",
    "org.manage": "admin",
    "billing.manage": None,
    "org.privacy": None,
    "members.manage": "admin",
    "keys.manage": "admin",
    "models.train": "train",
    "models.promote": "admin",
    "models.predict": "predict",
    "jobs.cancel": "train",
}


def permission_scope(permission: str) -> str | None:
    if permission in PERMISSION_SCOPE:
        return PERMISSION_SCOPE[permission]
    return product_permissions()[permission].scope


def required_permission(view, request) -> str:
    perms = getattr(view, "permissions", {})
    return perms.get(request.method, perms.get("*", "org.view"))


class IsOrganisationMember(permissions.BasePermission):
    """Sets ``request.organisation`` and ``request.role``; refuses callers without the permission."""

    message = "You do not have permission for this action."

    def has_permission(self, request, view) -> bool:
        needed = required_permission(view, request)
        if isinstance(request.auth, ApiKey):
            request.organisation, request.role = request.auth.organisation, None
            scope = permission_scope(needed)
            if scope is None or scope not in request.auth.scopes:
                self.message = f"This API key lacks the scope for this action ({scope or 'people only'})."
                return False
            return True
        if not (request.user and request.user.is_authenticated):
            return False
        membership = current_membership(request._request)
        if membership is None:
            self.message = "You are not a member of any organisation."
            return False
        request.organisation, request.role = membership.organisation, membership.role
        if not role_can(membership.role, needed):
            self.message = f"Your role ({membership.role}) does not allow this action."
            return False
        return True
