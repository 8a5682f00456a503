"""What each role may do. Checked at the edges (views, API permissions); services trust their caller.

Core's permissions are listed here; each product adds its own through the product registry
(``Product.permissions``, see ``core.products``), merged by ``permission_roles``.
"""

from core.products import product_permissions, products
from core.tenancy.models import Role

PERMISSIONS: dict[str, frozenset[str]] = {
    "org.view": frozenset(Role.values),
    "org.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "billing.manage": frozenset({Role.OWNER}),
    # The audit log, the organisation's export, import and deletion (core.privacy): owners only.
    "org.privacy": frozenset({Role.OWNER}),
    "members.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "keys.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "models.train": frozenset({Role.OWNER, Role.ADMIN}),
    "models.promote": frozenset({Role.OWNER, Role.ADMIN}),
    "models.predict": frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR}),
    "jobs.cancel": frozenset({Role.OWNER, Role.ADMIN}),
}

# Each role's description: what core lets it do, what products add (``Product.role_duties``), the rest.
_ROLE_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    Role.OWNER: ("Everything, including billing and the plan", "."),
    Role.ADMIN: ("Members, API keys, datasets, training and promotion of models", "."),
    Role.OPERATOR: ("Live dashboards", "; can run predictions."),
    Role.VIEWER: ("Read-only access to dashboards, models and usage", "."),
}


def role_descriptions() -> dict[str, str]:
    """Role -> one sentence for the members page, with the duties products add."""
    out = {}
    for role, (lead, tail) in _ROLE_DESCRIPTIONS.items():
        parts = [lead, *(p.role_duties[role] for p in products() if role in p.role_duties)]
        joined = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        out[role] = joined + tail
    return out


# Scopes an API key may carry, and the permission each one grants to a machine.
SCOPES: dict[str, str] = {
    "read": "Read organisation, usage, jobs and models",
    "predict": "Run predictions",
    "train": "Upload datasets and start training jobs",
    "admin": "Manage members and keys",
}


def permission_roles(permission: str) -> frozenset[str]:
    """The roles holding ``permission`` (core's or a product's); KeyError for an unknown one."""
    if permission in PERMISSIONS:
        return PERMISSIONS[permission]
    return product_permissions()[permission].roles


def role_can(role: str | None, permission: str) -> bool:
    return role is not None and role in permission_roles(permission)


def role_outranks(actor: str, target: str) -> bool:
    """Admins manage operators and viewers and other admins; only owners touch owners."""
    order = [Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.OWNER]
    if target == Role.OWNER:
        return actor == Role.OWNER
    return order.index(Role(actor)) >= order.index(Role.ADMIN)
