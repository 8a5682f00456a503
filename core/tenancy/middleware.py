"""Attach the signed-in person's current organisation and role to each request.

The current organisation is kept in the session (``org_id``) and must be one the user belongs to;
otherwise the first membership is used. API-key requests get theirs from the key (in DRF auth).
"""

from django.utils.functional import SimpleLazyObject

from core.tenancy.selectors import memberships_for_user


def _resolve(request):
    user = request.user
    if not user.is_authenticated:
        return None
    memberships = list(memberships_for_user(user=user))
    wanted = request.session.get("org_id")
    for membership in memberships:
        if membership.organisation_id == wanted:
            return membership
    return memberships[0] if memberships else None


class OrganisationMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.membership = SimpleLazyObject(lambda: _resolve(request))
        return self.get_response(request)


def current_membership(request):
    """The membership or None (unwraps the lazy object)."""
    membership = getattr(request, "membership", None)
    if membership is None:
        return None
    return membership if bool(membership) else None
