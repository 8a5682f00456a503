"""The chatbot's rows: conversations (with a known resume token), messages, answer templates, articles
(without passages: ``services.article_save`` indexes them)."""

import hashlib

import factory

from customer_service.models import (
    AnswerTemplate,
    Article,
    Conversation,
    ConversationStatus,
    Message,
    Sender,
)
from tests.factories import TenantFactory
from tests.factories.tenancy import OrganisationFactory


class ConversationFactory(TenantFactory):
    class Meta:
        model = Conversation

    class Params:
        token = factory.Sequence(lambda n: f"visitor-token-{n}")

    organisation = factory.SubFactory(OrganisationFactory)
    token_hash = factory.LazyAttribute(lambda o: hashlib.sha256(o.token.encode()).hexdigest())
    status = ConversationStatus.BOT


class MessageFactory(TenantFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    organisation = factory.SelfAttribute("conversation.organisation")
    sender = Sender.VISITOR
    text = factory.Sequence(lambda n: f"How do I change my PIN? ({n})")


class AnswerTemplateFactory(TenantFactory):
    class Meta:
        model = AnswerTemplate

    organisation = factory.SubFactory(OrganisationFactory)
    intent = factory.Sequence(lambda n: f"intent_{n}")
    body = "You can change your PIN at any of our ATMs."


class ArticleFactory(TenantFactory):
    class Meta:
        model = Article

    organisation = factory.SubFactory(OrganisationFactory)
    title = factory.Sequence(lambda n: f"Opening hours {n}")
    body = "Our branches are open Monday to Friday from 9am to 5pm."
