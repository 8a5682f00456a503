"""factory-boy factories per app, for tests that need rows in a given state without the path that makes them.

``tenancy`` (User, Organisation with a trial subscription and an owner, Membership, ApiKey), ``registry``
(Dataset through the rows service, ModelVersion), ``jobs`` (TrainingJob), ``customer_service``
(Conversation, Message, AnswerTemplate, Article) and ``finance_monitor`` (Source, Document, Entity).
Where a row only makes sense with what a service does beside it (a dataset's stored rows, an organisation's
subscription), the factory goes through that service; otherwise it writes the row. The fixtures in
``tests/conftest.py`` (``make_org``, ``make_member``, ``make_key``) stay the way most tests start.
"""

import factory


class TenantFactory(factory.django.DjangoModelFactory):
    """Tenant-owned rows are written through the unscoped manager: ``objects`` refuses without an
    organisation (``TenantManager``), and a factory is given its organisation as a field."""

    class Meta:
        abstract = True

    @classmethod
    def _get_manager(cls, model_class):
        return model_class.all_tenants
