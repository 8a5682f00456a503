"""Core's own role permissions (products add theirs through ``core.products``; ``core.tenancy.roles`` merges
them). A leaf module, so the product registry can refuse a product that redefines one of them without
importing ``roles`` (which reads the product registry)."""

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
