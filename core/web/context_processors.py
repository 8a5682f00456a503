from django.utils.functional import SimpleLazyObject

from core.tenancy.middleware import current_membership
from core.web.navigation import product_nav


def products(request):
    """``product_nav``: the products' navigation entries the current member may see (read only by pages that
    show the navigation, so it is resolved lazily)."""

    def nav():
        membership = current_membership(request)
        return product_nav(membership.role) if membership is not None else []

    return {"product_nav": SimpleLazyObject(nav)}
