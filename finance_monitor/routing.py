"""Websocket routes of the finance monitor, collected by ``core.routing`` through the product registry."""

from django.urls import path

from finance_monitor.consumers import AlertsConsumer, DocumentsConsumer

websocket_urlpatterns = [
    path("ws/finance-monitor/alerts/", AlertsConsumer.as_asgi()),
    path("ws/finance-monitor/documents/", DocumentsConsumer.as_asgi()),
]
