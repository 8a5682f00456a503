"""Live job progress for the signed-in member's organisation."""

from core.consumers import OrganisationFeedConsumer


class JobsConsumer(OrganisationFeedConsumer):
    topic = "jobs"
