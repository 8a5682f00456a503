"""What each role may do. Checked at the edges (views, API permissions); services trust their caller.

Core's permissions are listed in ``core.tenancy.permissions``; each product adds its own through the product
registry (``Product.permissions``, see ``core.products``), merged by ``permission_roles``.
"""

from core.products import product_permissions, products
from core.tenancy.models import Role
from core.tenancy.permissions import PERMISSIONS  # core's own (a leaf module: products check against it)

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


def scope_descriptions() -> dict[str, str]:
    """Scope -> what a key with it may do: core's sentence, then each product's duties for it (its
    ``scope_duties``, else the names of the permissions the scope grants there): later products show too."""
    out = {}
    for scope, lead in SCOPES.items():
        parts = []
        for product in products():
            names = [p.name for p in product.permissions if p.scope == scope]
            duty = product.scope_duties.get(scope) or (", ".join(names) + " permissions" if names else "")
            if duty:
                parts.append(f"{product.display_name}: {duty}")
        out[scope] = lead + "".join(f"; {part}" for part in parts)
    return out


def scope_choices() -> list[tuple[str, str]]:
    """The scopes as form choices, each with its description."""
    return [(scope, f"{scope}: {text}") for scope, text in scope_descriptions().items()]


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
