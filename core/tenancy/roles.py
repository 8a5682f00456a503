"""What each role may do. Checked at the edges (views, API permissions); services trust their caller."""

from core.tenancy.models import Role

PERMISSIONS: dict[str, frozenset[str]] = {
    "org.view": frozenset(Role.values),
    "org.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "billing.manage": frozenset({Role.OWNER}),
    "members.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "keys.manage": frozenset({Role.OWNER, Role.ADMIN}),
    "models.train": frozenset({Role.OWNER, Role.ADMIN}),
    "models.promote": frozenset({Role.OWNER, Role.ADMIN}),
    "models.predict": frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR}),
    "jobs.cancel": frozenset({Role.OWNER, Role.ADMIN}),
    "inbox.operate": frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR}),
}

ROLE_DESCRIPTIONS = {
    Role.OWNER: "Everything, including billing and the plan.",
    Role.ADMIN: "Members, API keys, datasets, training and promotion of models.",
    Role.OPERATOR: "Live dashboards and the chat inbox; can run predictions.",
    Role.VIEWER: "Read-only access to dashboards, models and usage.",
}

# Scopes an API key may carry, and the permission each one grants to a machine.
SCOPES: dict[str, str] = {
    "read": "Read organisation, usage, jobs and models",
    "predict": "Run predictions",
    "train": "Upload datasets and start training jobs",
    "admin": "Manage members and keys",
}


def role_can(role: str | None, permission: str) -> bool:
    return role is not None and role in PERMISSIONS[permission]


def role_outranks(actor: str, target: str) -> bool:
    """Admins manage operators and viewers and other admins; only owners touch owners."""
    order = [Role.VIEWER, Role.OPERATOR, Role.ADMIN, Role.OWNER]
    if target == Role.OWNER:
        return actor == Role.OWNER
    return order.index(Role(actor)) >= order.index(Role.ADMIN)
