"""Websockets of the finance monitor: members follow their organisation's alerts live (``fm.alert``)."""

from core.consumers import OrganisationFeedConsumer


class AlertsConsumer(OrganisationFeedConsumer):
    topic = "alerts"
    permission = "org.view"
