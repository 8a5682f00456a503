"""Datasets (stored through the rows service, so their rows can be read back) and model versions (rows
only: a version with weights comes from training, see ``tests/core/registry/trained.py``)."""

import factory

from core.registry import services as registry
from core.registry.models import Dataset, ModelVersion, VersionStatus
from tests.factories import TenantFactory
from tests.factories.tenancy import OrganisationFactory

LABELLED_ROWS = [
    *((f"how do i change my pin number {i}", "change_pin") for i in range(10)),
    *((f"where is my card delivery {i}", "card_arrival") for i in range(10)),
]


class DatasetFactory(TenantFactory):
    class Meta:
        model = Dataset

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"factory-dataset-{n}")
    task = "classification"
    rows = LABELLED_ROWS
    source = "factory.csv"

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return registry.dataset_from_rows(**kwargs)


class ModelVersionFactory(TenantFactory):
    class Meta:
        model = ModelVersion

    organisation = factory.SubFactory(OrganisationFactory)
    app = "customer_service"
    task = "intent"
    version = factory.Sequence(lambda n: n + 1)
    kind = "classifier"
    status = VersionStatus.TRAINING
    method = "head"
    labels = factory.LazyFunction(lambda: ["card_arrival", "change_pin"])
