"""The support chatbot's data: bot settings, answer templates, knowledge base, conversations."""

import secrets
import uuid

from django.conf import settings
from django.db import models

from core.base_models import TenantModel


def new_widget_key() -> str:
    return "wk_" + secrets.token_urlsafe(18)


class UncertainMode(models.TextChoices):
    """What the bot does with a question it is not sure enough of to answer (before handing off)."""

    SUGGEST = "suggest", "Offer its best guesses as buttons"
    REPHRASE = "rephrase", "Ask the visitor to rephrase, once"
    HANDOFF = "handoff", "Hand off to a person at once"


class WidgetPosition(models.TextChoices):
    BOTTOM_RIGHT = "bottom-right", "Bottom right"
    BOTTOM_LEFT = "bottom-left", "Bottom left"


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
    # Per-intent overrides of ``intent_threshold``: {"cancel_subscription": 0.7}.
    intent_thresholds = models.JSONField(default=dict, blank=True)
    uncertain_mode = models.CharField(
        max_length=16, choices=UncertainMode.choices, default=UncertainMode.SUGGEST
    )
    # Guesses at or above this probability are offered as suggestions (below the intent's threshold).
    suggestion_floor = models.FloatField(default=0.15)
    rephrase_message = models.CharField(
        max_length=500, default="Sorry, I am not sure I understood. Could you say it in other words?"
    )
    # Office hours: {"0": ["09:00", "17:00"], ...} by weekday (0 = Monday) in ``timezone``; a day not
    # listed is closed. Off (``office_hours_enabled`` false): always within hours.
    office_hours_enabled = models.BooleanField(default=False)
    office_hours = models.JSONField(default=dict, blank=True)
    timezone = models.CharField(max_length=64, default="UTC")
    # The widget's branding (``services.branding``): public through ``widget/<key>/config.json``. The avatar
    # is kept re-encoded (never the uploaded bytes), with its type and a digest that names the version.
    brand_colour = models.CharField(max_length=7, default="#3056d3")
    widget_position = models.CharField(
        max_length=16, choices=WidgetPosition.choices, default=WidgetPosition.BOTTOM_RIGHT
    )
    welcome_text = models.CharField(max_length=200, blank=True, default="")
    avatar = models.BinaryField(blank=True, default=b"")
    avatar_type = models.CharField(max_length=32, blank=True, default="")
    avatar_digest = models.CharField(max_length=16, blank=True, default="")
    # Answers from the knowledge base phrased by a small generative model from the top passages only, the
    # passages cited (``services.grounded``); off: the closest passage itself, as before.
    grounded_answers = models.BooleanField(default=False)
    # The hand-off rule compares the top probability capped by the model's ``in_scope`` (``core.ml.ood``:
    # how much the question looks like the training examples), so questions unlike anything it was trained
    # on go on to the knowledge base or a person. Off by default: on templated training sets (the demo's
    # Bitext rows) ordinary wordings look atypical (BENCHMARKS.md section 17).
    out_of_scope_check = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organisation"], name="uniq_bot_settings"),
            models.CheckConstraint(
                condition=models.Q(suggestion_floor__gte=0) & models.Q(suggestion_floor__lte=1),
                name="cs_suggestion_floor_0_1",
            ),
        ]


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
    # Nobody could take the hand-off (outside office hours, or no operator online): the bot asked for an
    # e-mail address to reply to, and keeps asking until it has a valid one.
    email_requested = models.BooleanField(default=False)
    visitor_email = models.EmailField(blank=True, default="")
    last_message_at = models.DateTimeField(null=True, blank=True, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # The page the visitor is on (the widget says so when it starts or resumes the chat on a page).
    page_url = models.CharField(max_length=500, blank=True, default="")
    # sha256 of the widget's visitor id (kept in the visitor's browser across chats): their earlier chats.
    visitor_hash = models.CharField(max_length=64, blank=True, default="")
    # Operators have seen the conversation up to this message's time: later visitor messages are unread
    # (one mark for the team, as a shared inbox works: whoever opens it reads it for everyone).
    operator_seen_at = models.DateTimeField(null=True, blank=True)
    # The visitor's last transcript request (one per conversation per ``TRANSCRIPT_EVERY_S``).
    transcript_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_message_at", "-id"]
        indexes = [
            models.Index(fields=["organisation", "status"]),
            models.Index(fields=["organisation", "visitor_hash"], name="cs_conv_visitor"),
            models.Index(fields=["organisation", "visitor_email"], name="cs_conv_email"),
        ]


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
    GROUNDED = "grounded", "Answer written from knowledge-base passages"
    HANDOFF = "handoff", "Hand-off to a person"
    SUGGESTIONS = "suggestions", "Suggestions (did you mean)"
    REPHRASE = "rephrase", "Asked to rephrase"
    CHOICE = "choice", "The visitor's choice of a suggestion"
    EMAIL = "email", "E-mail address asked or noted"
    SMALLTALK = "smalltalk", "Small talk (a greeting, thanks or goodbye)"
    OPERATOR = "operator", "Operator"


class LabelSource(models.TextChoices):
    NONE = "", "None"
    OPERATOR = "operator", "An operator's correction"
    VISITOR = "visitor", "The visitor's choice of a suggestion"


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
    # Who gave ``corrected_intent``: an operator, or the visitor picking one of the bot's suggestions (an
    # operator's correction wins over a visitor's choice).
    label_source = models.CharField(max_length=16, choices=LabelSource.choices, blank=True, default="")
    # On a suggestions message: {"question": <visitor message id>, "options": [{"intent", "label"}],
    # "chosen": "" | <intent> | "none"}.
    suggestions = models.JSONField(default=dict, blank=True)
    # On a grounded answer: the articles of the passages it cites, [{"article": id, "title", "url"}].
    citations = models.JSONField(default=list, blank=True)
    # The widget's own id for a visitor message: a frame sent again (no ack seen) is stored once.
    client_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=~models.Q(client_id=""),
                name="uniq_cs_message_client_id",
            )
        ]


class InternalNote(TenantModel):
    """An operator's note on a conversation, for operators only. Kept apart from ``Message`` on purpose: the
    widget replays and forwards messages, and a note must never reach the visitor."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    text = models.TextField()

    class Meta:
        ordering = ["created_at", "id"]


class SavedReply(TenantModel):
    """A reply operators insert into the reply box rather than type it (canned), per organisation."""

    title = models.CharField(max_length=80)
    body = models.TextField()

    class Meta:
        ordering = ["title"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "title"], name="uniq_saved_reply_title")
        ]
