"""Jobs as rows in a given state (a job that runs is started through its service or endpoint)."""

import factory

from core.jobs.models import JobStatus, TrainingJob
from tests.factories import TenantFactory
from tests.factories.tenancy import OrganisationFactory


class TrainingJobFactory(TenantFactory):
    class Meta:
        model = TrainingJob

    organisation = factory.SubFactory(OrganisationFactory)
    kind = "usage.export"
    queue = "default"
    status = JobStatus.QUEUED
