"""The factories make rows the platform reads as its own: tenant-scoped, authenticated, readable."""

import pytest

from core.billing.services import subscription_for
from core.registry import services as registry
from core.tenancy import services as tenancy
from core.tenancy.models import Membership, Role
from customer_service import services as chatbot
from customer_service.models import Conversation, Message
from finance_monitor.models import Document, Entity, Source
from tests.factories.customer_service import (
    AnswerTemplateFactory,
    ArticleFactory,
    ConversationFactory,
    MessageFactory,
)
from tests.factories.finance_monitor import DocumentFactory, EntityFactory, SourceFactory
from tests.factories.jobs import TrainingJobFactory
from tests.factories.registry import DatasetFactory, ModelVersionFactory
from tests.factories.tenancy import ApiKeyFactory, MembershipFactory, organisation_with_owner


@pytest.mark.django_db
def test_an_organisation_has_its_owner_and_trial_like_after_sign_up():
    organisation, owner = organisation_with_owner(name="Acme")
    assert organisation.name == "Acme" and owner.check_password("correct-horse-battery-9")
    assert Membership.objects.for_org(organisation).get(user=owner).role == Role.OWNER
    assert subscription_for(organisation=organisation).plan.code == "trial"
    viewer = MembershipFactory(organisation=organisation)
    assert viewer.role == Role.VIEWER and Membership.objects.for_org(organisation).count() == 2


@pytest.mark.django_db
def test_an_api_key_authenticates_with_its_secret_and_scopes():
    key = ApiKeyFactory(scopes=("read", "predict"))
    assert tenancy.api_key_authenticate(secret=key.secret).pk == key.pk
    assert key.scopes == ["predict", "read"]


@pytest.mark.django_db
def test_registry_rows_belong_to_their_organisation():
    dataset = DatasetFactory()
    rows = [row for split in registry.dataset_rows(dataset=dataset).values() for row in split]
    assert dataset.row_count == len(rows) == 20 and sorted(dataset.labels) == ["card_arrival", "change_pin"]
    version = ModelVersionFactory(organisation=dataset.organisation, dataset=dataset)
    job = TrainingJobFactory(organisation=dataset.organisation)
    other = ModelVersionFactory()
    assert version.organisation_id == job.organisation_id != other.organisation_id


@pytest.mark.django_db
def test_a_conversation_resumes_with_its_token():
    conversation = ConversationFactory(token="secret-token")
    message = MessageFactory(conversation=conversation)
    bot = chatbot.bot_settings_for(organisation=conversation.organisation)
    resumed = chatbot.conversation_resume(
        bot=bot, public_id=str(conversation.public_id), token="secret-token"
    )
    assert resumed.pk == conversation.pk
    assert Message.objects.for_org(conversation.organisation).get().pk == message.pk
    assert not Conversation.objects.for_org(ArticleFactory().organisation).exists()
    template = AnswerTemplateFactory(organisation=conversation.organisation, intent="change_pin")
    assert template.active and template.intent == "change_pin"


@pytest.mark.django_db
def test_finance_rows_are_scoped():
    source = SourceFactory()
    organisation = source.organisation
    document = DocumentFactory(organisation=organisation, source=source)
    entity = EntityFactory(organisation=organisation, ticker="ACME")
    assert Document.objects.for_org(organisation).get().text_hash == document.text_hash
    assert Entity.objects.for_org(organisation).get().pk == entity.pk
    assert Source.objects.for_org(organisation).get().pk == source.pk
    assert not Document.objects.for_org(DocumentFactory().organisation).filter(pk=document.pk).exists()
