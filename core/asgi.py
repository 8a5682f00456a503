"""ASGI entry point: HTTP through Django, websockets through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import re_path  # noqa: E402

from core.api.fast_predict import FastPredictMiddleware  # noqa: E402
from core.api.fast_routes import FastRouteMiddleware  # noqa: E402
from core.heap import heap_settle  # noqa: E402
from core.registry.services.serving import serving_threads_apply  # noqa: E402
from core.registry.services.warmup import warmup_at_start  # noqa: E402
from core.routing import public_websocket_urlpatterns, websocket_urlpatterns  # noqa: E402
from core.web.middleware import BodyLimitASGIMiddleware  # noqa: E402

serving_threads_apply()  # torch and numpy's BLAS on ML_SERVE_THREADS from the first request
warmup_at_start()  # this web process loads the active models in the background, before visitors ask

application = ProtocolTypeRouter(
    {
        "http": BodyLimitASGIMiddleware(FastPredictMiddleware(FastRouteMiddleware(django_asgi_app))),
        "websocket": URLRouter(
            [
                *public_websocket_urlpatterns,
                re_path(
                    r"^", AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
                ),
            ]
        ),
    }
)

heap_settle()  # start-up's objects out of the collector's full passes (again once the warm-up has loaded)
