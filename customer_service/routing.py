"""Websocket routes of the support chatbot, collected by ``core.routing`` through settings."""

from django.urls import path

from customer_service.consumers import ChatConsumer, InboxConsumer

# Opened from tenants' own sites: no same-origin check and no session (the bot checks its origins).
public_websocket_urlpatterns = [path("ws/chat/<str:widget_key>/", ChatConsumer.as_asgi())]
# Signed-in members, behind the allowed-hosts origin check and the session.
websocket_urlpatterns = [path("ws/inbox/", InboxConsumer.as_asgi())]
