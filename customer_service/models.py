"""The support chatbot's data: bot settings, answer templates, knowledge base, conversations."""

import secrets
import uuid

from django.conf import settings
from django.db import models

from core.base_models import TenantModel


def new_widget_key() -> str:
    return "wk_" + secrets.token_urlsafe(18)


class BotSettings(TenantModel):
    """One per organisation. The widget key is public (it sits in the tenant's web page): it names the
    organisation, and ``allowed_origins`` limits which sites may open a chat with it."""

    widget_key = models.CharField(max_length=40, unique=True, default=new_widget_key)
    allowed_origins = models.JSONField(default=list, blank=True)  # empty: any origin
    intent_threshold = models.FloatField(default=0.5)  # answer from a template at or above (bench/handoff.py)
    retrieval_threshold = models.FloatField(default=0.5)  # answer from an article at or above this cosine
    greeting = models.CharField(max_length=500, default="Hello! How can I help you today?")
    handoff_message = models.CharField(
        max_length=500, default="Let me connect you with a member of our team. Please stay with us."
    )
    bot_name = models.CharField(max_length=60, default="Assistant")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation"], name="uniq_bot_settings")]


class AnswerTemplate(TenantModel):
    """The answer the bot gives when the intent model recognises ``intent`` confidently enough."""

    intent = models.CharField(max_length=100)
    body = models.TextField()
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation", "intent"], name="uniq_answer_template_intent")
        ]
        ordering = ["intent"]


class Article(TenantModel):
    """A knowledge-base article; searched through its chunks' vectors for questions no template covers."""

    title = models.CharField(max_length=200)
    body = models.TextField()
    url = models.URLField(blank=True, default="")
    published = models.BooleanField(default=True)

    class Meta:
        ordering = ["title"]


class ArticleChunk(TenantModel):
    """A passage of an article with its unit-length vector (float32 bytes) and the model that made it."""

    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField()
    text = models.TextField()
    vector = models.BinaryField()
    embedder = models.CharField(max_length=80)  # text_embedder's reference: stale when it changes

    class Meta:
        ordering = ["article_id", "position"]
        indexes = [models.Index(fields=["organisation", "embedder"])]


class ConversationStatus(models.TextChoices):
    BOT = "bot", "With the bot"
    WAITING = "waiting", "Waiting for an operator"
    OPERATOR = "operator", "With an operator"
    CLOSED = "closed", "Closed"


class Conversation(TenantModel):
    """A visitor's chat. ``public_id`` and the token (kept hashed) let the widget resume it."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    token_hash = models.CharField(max_length=64)
    status = models.CharField(
        max_length=16, choices=ConversationStatus.choices, default=ConversationStatus.BOT
    )
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    handoff_reason = models.CharField(max_length=200, blank=True, default="")
    origin = models.CharField(max_length=200, blank=True, default="")
    rating = models.PositiveSmallIntegerField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        indexes = [models.Index(fields=["organisation", "status"])]


class Sender(models.TextChoices):
    VISITOR = "visitor", "Visitor"
    BOT = "bot", "Bot"
    OPERATOR = "operator", "Operator"
    SYSTEM = "system", "System"


class AnswerSource(models.TextChoices):
    NONE = "", "None"
    GREETING = "greeting", "Greeting"
    TEMPLATE = "template", "Answer template"
    ARTICLE = "article", "Knowledge-base article"
    HANDOFF = "handoff", "Hand-off to a person"
    OPERATOR = "operator", "Operator"


class Message(TenantModel):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    sender = models.CharField(max_length=16, choices=Sender.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    text = models.TextField()
    source = models.CharField(max_length=16, choices=AnswerSource.choices, blank=True, default="")
    intent = models.CharField(max_length=100, blank=True, default="")
    confidence = models.FloatField(null=True, blank=True)
    article = models.ForeignKey(Article, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    model_version = models.ForeignKey(
        "registry.ModelVersion", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # An operator's correction of the bot's intent for this (visitor) message: future training data.
    corrected_intent = models.CharField(max_length=100, blank=True, default="")

    class Meta:
        ordering = ["created_at", "id"]
