"""Websocket routes. The platform's own is the live jobs feed; products contribute theirs through the
product registry (``Product.websocket_routes``, see ``core.products``), each module offering
``websocket_urlpatterns`` (members: same-origin, session) and optionally ``public_websocket_urlpatterns``
(embeddable widgets: any origin, no session; their consumers check who may connect)."""

from importlib import import_module

from django.urls import path

from core.jobs.consumers import JobsConsumer
from core.products import products

websocket_urlpatterns = [path("ws/jobs/", JobsConsumer.as_asgi())]
public_websocket_urlpatterns = []
for _product in products():
    if _product.websocket_routes:
        _module = import_module(_product.websocket_routes)
        websocket_urlpatterns += getattr(_module, "websocket_urlpatterns", [])
        public_websocket_urlpatterns += getattr(_module, "public_websocket_urlpatterns", [])
