"""The finance monitor's rows: sources, documents (hashed like ingestion hashes them), watch-list entries."""

import factory
from django.utils import timezone

from finance_monitor.models import Document, Entity, EntityKind, Source, SourceKind
from finance_monitor.services.documents import text_hash
from tests.factories import TenantFactory
from tests.factories.tenancy import OrganisationFactory


class SourceFactory(TenantFactory):
    class Meta:
        model = Source

    organisation = factory.SubFactory(OrganisationFactory)
    name = factory.Sequence(lambda n: f"Factory source {n}")
    kind = SourceKind.API


class DocumentFactory(TenantFactory):
    class Meta:
        model = Document

    organisation = factory.SubFactory(OrganisationFactory)
    source = None
    text = factory.Sequence(lambda n: f"Acme Corp shares rose 3% after earnings, report number {n}.")
    text_hash = factory.LazyAttribute(lambda o: text_hash(o.text))
    received_at = factory.LazyFunction(timezone.now)
    occurred_at = factory.SelfAttribute("received_at")


class EntityFactory(TenantFactory):
    class Meta:
        model = Entity

    organisation = factory.SubFactory(OrganisationFactory)
    kind = EntityKind.COMPANY
    name = factory.Sequence(lambda n: f"Acme {n} Corp")
    ticker = ""
    aliases = factory.LazyFunction(list)
