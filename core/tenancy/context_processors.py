from core.tenancy.middleware import current_membership
from core.tenancy.roles import role_can


def organisation(request):
    membership = current_membership(request)
    if membership is None:
        return {"current_org": None, "current_role": None, "can": {}}
    role = membership.role
    perms = ["members.manage", "keys.manage", "billing.manage", "models.train", "jobs.cancel", "org.privacy"]
    return {
        "current_org": membership.organisation,
        "current_role": role,
        "can": {p.replace(".", "_"): role_can(role, p) for p in perms},
    }
