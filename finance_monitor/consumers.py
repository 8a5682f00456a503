"""Websockets of the finance monitor: members follow their organisation's alerts (``fm.alert``) and newly
classified documents (``fm.documents``) live. Authentication, the organisation and its group come from
``core.consumers.OrganisationFeedConsumer``; events are broadcast by the services after commit."""

from core.consumers import OrganisationFeedConsumer


class AlertsConsumer(OrganisationFeedConsumer):
    topic = "alerts"
    permission = "org.view"


class DocumentsConsumer(OrganisationFeedConsumer):
    """The dashboard's live feed: each classified batch arrives as one ``fm.documents`` frame."""

    topic = "documents"
    permission = "org.view"
