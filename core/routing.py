"""Websocket routes. The platform's own is the live jobs feed; apps contribute theirs through the
``WEBSOCKET_ROUTING_MODULES`` setting (so core never imports a vertical), each module offering
``websocket_urlpatterns`` (members: same-origin, session) and optionally ``public_websocket_urlpatterns``
(embeddable widgets: any origin, no session; their consumers check who may connect)."""

from importlib import import_module

from django.conf import settings
from django.urls import path

from core.jobs.consumers import JobsConsumer

websocket_urlpatterns = [path("ws/jobs/", JobsConsumer.as_asgi())]
public_websocket_urlpatterns = []
for _name in settings.WEBSOCKET_ROUTING_MODULES:
    _module = import_module(_name)
    websocket_urlpatterns += getattr(_module, "websocket_urlpatterns", [])
    public_websocket_urlpatterns += getattr(_module, "public_websocket_urlpatterns", [])
