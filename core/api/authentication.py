"""API-key authentication for machines: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from rest_framework import authentication, exceptions

from core.errors import TrellisError
from core.tenancy import services


class KeyPrincipal:
    """The request's user when a machine calls with an API key."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, key) -> None:
        self.key = key
        self.username = f"api-key:{key.prefix}"

    def __str__(self) -> str:
        return self.username


def presented_secret(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.META.get("HTTP_X_API_KEY") or None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """The key, its organisation, subscription and plan limits from the per-process cache
    (``api_key_authenticate_cached``: read again at most every ``KEY_CACHE_TTL_S``; a revocation, a plan or
    subscription change in this process clears it at once, in another process within that time)."""

    def authenticate(self, request):
        secret = presented_secret(request)
        if not secret:
            return None
        try:
            key = services.api_key_authenticate_cached(secret=secret)
        except TrellisError as exc:
            raise exceptions.AuthenticationFailed(exc.message)
        request._request.api_key = key  # for the usage middleware
        return KeyPrincipal(key), key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'
