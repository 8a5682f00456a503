"""The finance monitor's data: sources, feed polls and documents."""

from django.db import models
from django.db.models import Q

from core.base_models import TenantManager, TenantModel
from core.privacy.fields import SealedCharField


class SourceKind(models.TextChoices):
    API = "api", "Pushed through the API"
    UPLOAD = "upload", "Uploaded file"
    FEED = "feed", "RSS/Atom feed"


class Source(TenantModel):
    """Where documents come from. Feeds are polled on their own schedule; health is kept on the row."""

    name = models.CharField(max_length=120)
    kind = models.CharField(max_length=10, choices=SourceKind.choices)
    feed_url = models.URLField(max_length=2000, blank=True, default="")
    poll_interval_s = models.PositiveIntegerField(default=900)
    enabled = models.BooleanField(default=True)
    # conditional GET validators from the last 200 answer
    etag = models.CharField(max_length=500, blank=True, default="")
    last_modified = models.CharField(max_length=100, blank=True, default="")
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # health
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_document_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    quiet_after_s = models.PositiveIntegerField(default=86400)  # no new document for this long: a warning

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organisation", "name"], name="uniq_fm_source_name")]


class FeedPoll(TenantModel):
    """One poll of a feed: what happened (kept so a source's history of failures is visible)."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="polls")
    status_code = models.PositiveIntegerField(null=True)
    outcome = models.CharField(max_length=20)  # ok, not_modified, error
    error = models.TextField(blank=True, default="")
    bytes_read = models.PositiveIntegerField(default=0)
    entries = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-id"]


class Sentiment(models.TextChoices):
    POSITIVE = "positive", "Positive"
    NEUTRAL = "neutral", "Neutral"
    NEGATIVE = "negative", "Negative"


class Document(TenantModel):
    """A news item or post. Topic and sentiment stay empty until classified (``classified_at`` null: pending)
    by the organisation's active ``topic`` and ``sentiment`` models (``services.classification``).

    An analyst's correction (``services.corrections``) replaces topic/sentiment (and so moves the trend
    counts); the model's own answer is kept in ``model_answer`` and the corrected values in ``corrected_*``
    (the feedback that retraining reads).
    """

    source = models.ForeignKey(Source, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    client_id = models.CharField(max_length=200, blank=True, default="")  # the pusher's id: idempotency
    url = models.URLField(max_length=2000, blank=True, default="")
    title = models.CharField(max_length=500, blank=True, default="")
    text = models.TextField()
    author = models.CharField(max_length=200, blank=True, default="")
    language = models.CharField(max_length=16, blank=True, default="")
    published_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField()
    # the time trends count it at: published_at when known and not in the future, else received_at
    occurred_at = models.DateTimeField()
    text_hash = models.CharField(max_length=64)  # sha256 of the normalised text (near-duplicates)
    # a copy (same normalised text as an earlier document of the organisation): stored and listed, never
    # classified nor counted in trends or alerts; ``copies`` is how many copies an original has
    duplicate_of = models.ForeignKey(
        "self", on_delete=models.CASCADE, null=True, blank=True, related_name="+", db_index=False
    )
    copies = models.PositiveIntegerField(default=0)
    topic = models.CharField(max_length=100, blank=True, default="")
    topic_probability = models.FloatField(null=True, blank=True)
    sentiment = models.CharField(max_length=10, choices=Sentiment.choices, blank=True, default="")
    sentiment_probabilities = models.JSONField(null=True, blank=True)  # {"positive", "neutral", "negative"}
    score = models.FloatField(null=True, blank=True)  # P(pos) - P(neg)
    classified_at = models.DateTimeField(null=True, blank=True)
    # what the trend buckets hold for this document (so a retry or re-classification counts once)
    counted = models.JSONField(null=True, blank=True)
    # the model's classification as it was before the first correction: topic, topic_probability, sentiment,
    # probabilities, score, classified_at (None: never corrected, or corrected before any model answered)
    model_answer = models.JSONField(null=True, blank=True)
    corrected_topic = models.CharField(max_length=100, blank=True, default="")
    corrected_sentiment = models.CharField(max_length=10, choices=Sentiment.choices, blank=True, default="")
    corrected_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "client_id"], condition=~Q(client_id=""), name="uniq_fm_doc_client_id"
            ),
            models.UniqueConstraint(
                fields=["organisation", "url"], condition=~Q(url=""), name="uniq_fm_doc_url"
            ),
            # one original per normalised text; its copies share the hash
            models.UniqueConstraint(
                fields=["organisation", "text_hash"],
                condition=Q(duplicate_of__isnull=True),
                name="uniq_fm_doc_text_hash",
            ),
        ]
        indexes = [
            models.Index(fields=["organisation", "-occurred_at"], name="fm_doc_org_time"),
            models.Index(fields=["organisation", "source", "received_at"], name="fm_doc_org_source_time"),
            models.Index(fields=["organisation", "topic", "-occurred_at"], name="fm_doc_org_topic_time"),
            # the classification queue's pick: the organisation's pending documents in id order
            models.Index(
                fields=["organisation", "id"],
                condition=Q(classified_at__isnull=True, duplicate_of__isnull=True),
                name="fm_doc_pending",
            ),
            # an original's copies, in order
            models.Index(
                fields=["duplicate_of", "id"], condition=Q(duplicate_of__isnull=False), name="fm_doc_copies"
            ),
            models.Index(
                fields=["organisation", "corrected_at"],
                condition=Q(corrected_at__isnull=False),
                name="fm_doc_corrected",
            ),
            # the dashboard's live feed: the latest classified documents
            models.Index(
                fields=["organisation", "-classified_at"],
                condition=Q(classified_at__isnull=False),
                name="fm_doc_org_classified",
            ),
        ]


class DocumentBand(models.Model):
    """One LSH band of an original document's MinHash signature (``finance_monitor.near_duplicates``): the
    index ``services.near_copies`` looks near copies up in. Written in the transaction that stores the
    document; only originals have bands (a copy's original stands for it); ``created_at`` bounds the lookup
    to ``FM_NEAR_DUPLICATE_WINDOW_DAYS``.

    Tenant-owned and failing closed like a ``TenantModel``, but slimmer: 16 rows per original, so no
    ``updated_at`` and no index beyond the lookup's and the document's (for deletes); each extra index cost
    the ingest about a tenth of its originals per second (bench/fm_copies.py)."""

    organisation = models.ForeignKey(
        "tenancy.Organisation", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="+")
    band = models.PositiveSmallIntegerField()
    hash = models.BigIntegerField()  # the band's rows hashed with its index: unique across bands
    created_at = models.DateTimeField(auto_now_add=True)

    all_tenants = models.Manager()
    objects = TenantManager()

    class Meta:
        indexes = [models.Index(fields=["organisation", "hash", "created_at"], name="fm_band_lookup")]

    def __str__(self) -> str:
        return f"band {self.band} of document {self.document_id}"


class EntityKind(models.TextChoices):
    COMPANY = "company", "Company"
    TICKER = "ticker", "Ticker"
    KEYWORD = "keyword", "Keyword"


class Entity(TenantModel):
    """A watch-list entry: a company (name, ticker, aliases), a bare ticker, or a keyword phrase."""

    kind = models.CharField(max_length=10, choices=EntityKind.choices)
    name = models.CharField(max_length=200)
    ticker = models.CharField(max_length=12, blank=True, default="")
    aliases = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["organisation", "name"], name="uniq_fm_entity_name")]


class Mention(TenantModel):
    """A document mentions a watch-list entry (``how``: cashtag, name, alias, ticker, keyword)."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="mentions")
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, related_name="mentions")
    how = models.CharField(max_length=10)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["document", "entity"], name="uniq_fm_mention")]
        indexes = [models.Index(fields=["organisation", "entity", "document"], name="fm_mention_entity")]


class Granularity(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class TrendBucket(TenantModel):
    """Counts of classified documents in one hour or day (UTC) for one topic, watch-list entry, or all.

    Maintained incrementally by ``services.trends.document_classified`` (an upsert that adds), so a trend
    query reads a few hundred rows whatever the number of documents.
    """

    dimension = models.CharField(max_length=10)  # topic, entity, all
    key = models.CharField(max_length=100)  # the topic, the entity's id, "" for all
    granularity = models.CharField(max_length=4, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    volume = models.IntegerField(default=0)
    negative = models.IntegerField(default=0)
    neutral = models.IntegerField(default=0)
    positive = models.IntegerField(default=0)
    score_sum = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organisation", "dimension", "key", "granularity", "bucket_start"],
                name="uniq_fm_trend_bucket",
            )
        ]


class AlertTarget(models.TextChoices):
    ALL = "all", "Everything"
    TOPIC = "topic", "A topic"
    ENTITY = "entity", "A watch-list entry"


class AlertKind(models.TextChoices):
    SHARE = "share", "Negative share"
    VOLUME = "volume", "Volume"


class AlertRule(TenantModel):
    """When to alert: a target's trend buckets, the tests to run on them, and where to deliver.

    ``state`` is the rule's episode per kind (``finance_monitor.surge.Episode``: inside a surge, last fired)
    and ``evaluated_until`` the start of the last complete bucket evaluated, both written by the evaluation.
    """

    name = models.CharField(max_length=120)
    target = models.CharField(max_length=10, choices=AlertTarget.choices, default=AlertTarget.ALL)
    topic = models.CharField(max_length=100, blank=True, default="")
    entity = models.ForeignKey(Entity, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    granularity = models.CharField(max_length=4, choices=Granularity.choices, default=Granularity.HOUR)
    baseline_buckets = models.PositiveIntegerField(default=168)
    min_volume = models.PositiveIntegerField(default=30)
    significance = models.FloatField(default=0.002)
    test_share = models.BooleanField(default=True)
    test_volume = models.BooleanField(default=False)
    cooldown_s = models.PositiveIntegerField(default=6 * 3600)
    enabled = models.BooleanField(default=True)
    email_recipients = models.JSONField(default=list, blank=True)
    webhook_url = models.URLField(max_length=2000, blank=True, default="")
    webhook_secret = SealedCharField(max_length=100, blank=True, default="")  # sealed in the column
    state = models.JSONField(default=dict, blank=True)
    evaluated_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "name"], name="uniq_fm_alert_rule_name")
        ]


class Alert(TenantModel):
    """A surge a rule found in one bucket, with the figures of the test and the documents that caused it."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=10, choices=AlertKind.choices)
    dimension = models.CharField(max_length=10)  # the trend buckets tested: all, topic, entity
    key = models.CharField(max_length=100, blank=True, default="")
    granularity = models.CharField(max_length=4, choices=Granularity.choices)
    bucket_start = models.DateTimeField()
    window = models.PositiveIntegerField(default=1)  # buckets pooled by the test, ending at bucket_start
    fired_at = models.DateTimeField()
    volume = models.IntegerField()
    negative = models.IntegerField()
    observed = models.FloatField()  # negative share, or documents per bucket
    baseline = models.FloatField()  # the baseline's negative share, or documents per bucket
    baseline_volume = models.IntegerField()
    p_value = models.FloatField()
    evidence = models.ManyToManyField(Document, through="AlertEvidence", related_name="+")
    evidence_count = models.IntegerField(default=0)  # all of them, when more than the stored cap

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "bucket_start", "kind"], name="uniq_fm_alert_rule_bucket")
        ]
        indexes = [models.Index(fields=["organisation", "-fired_at"], name="fm_alert_org_time")]


class AlertEvidence(TenantModel):
    alert = models.ForeignKey(Alert, on_delete=models.CASCADE, related_name="+")
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["alert", "document"], name="uniq_fm_alert_evidence")]


class DeliveryChannel(models.TextChoices):
    EMAIL = "email", "E-mail"
    WEBHOOK = "webhook", "Webhook"


class DeliveryState(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    RETRYING = "retrying", "Failed, will retry"
    FAILED = "failed", "Failed for good"


class Delivery(TenantModel):
    """One attempt to deliver an alert (or a rule's test webhook, ``alert`` empty) on one channel."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.ForeignKey(
        Alert, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries"
    )
    channel = models.CharField(max_length=10, choices=DeliveryChannel.choices)
    attempt = models.PositiveIntegerField(default=1)
    target = models.CharField(max_length=2000)  # the url, or the recipients
    state = models.CharField(max_length=10, choices=DeliveryState.choices)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.CharField(max_length=1000, blank=True, default="")
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organisation", "alert"], name="fm_delivery_org_alert")]


class Replay(TenantModel):
    """A timed replay of the shipped twitter financial news texts into a source (the demo's feed): what it
    has pushed so far, so each beat tick (``services.replay.replay_tick``) pushes only what has come due.

    ``plan`` holds the timeline (``services.replay.ReplayPlan``): a backfilled baseline of past hours, a live
    stream, and a planted surge of negative texts at ``surge_after_s``.
    """

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="+")
    plan = models.JSONField(default=dict)
    started_at = models.DateTimeField(null=True, blank=True)  # the first tick: the timeline's zero
    backfilled_at = models.DateTimeField(null=True, blank=True)
    live_pushed = models.PositiveIntegerField(default=0)
    surged_at = models.DateTimeField(null=True, blank=True)
    evaluated_at = models.DateTimeField(null=True, blank=True)  # alert rules evaluated after the surge
    finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
