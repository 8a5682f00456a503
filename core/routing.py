"""Websocket routes. Apps add theirs here only through core.consumers or their own routing modules
listed in settings; the platform's own is the live jobs feed."""

from django.urls import path

from core.jobs.consumers import JobsConsumer

websocket_urlpatterns = [path("ws/jobs/", JobsConsumer.as_asgi())]
