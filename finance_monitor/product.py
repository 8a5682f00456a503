"""The finance monitor as a product of the platform (``core.products``), declared once.

Its meters: ``documents_ingested`` (each stored document, copies included: push, batch, upload, feed) and
``documents_classified`` (each document given a topic and sentiment by the organisation's models). Its model
tasks: ``topic`` and ``sentiment`` (classifiers; the defaults are trained for a new organisation from the
shipped twitter financial news sets, ``services.defaults``).
"""

from types import MappingProxyType

from core.billing.meters import MeterSpec
from core.jobs.handlers import JobKind
from core.jobs.queues import Queue
from core.products import (
    BeatEntry,
    DashboardCard,
    ModelTask,
    NavEntry,
    OnboardingStep,
    Product,
    ProductPermission,
    StepLink,
)
from core.registry.describe import train_job_sentence
from core.tenancy.models import Role
from finance_monitor import demo
from finance_monitor.links import LINKS_AS_WORD
from finance_monitor.services.trends import trend_buckets_remap


def _train_default(job, reporter) -> dict:
    from finance_monitor.services.defaults import default_train_job_handler

    return default_train_job_handler(job, reporter)


def _warm_ingest() -> None:
    """What a web process's first ingest would otherwise read (0.3 s): the words the near-copy rule treats as
    names, learnt from the shipped texts (``near_duplicates.name_words``)."""
    from finance_monitor.near_duplicates import name_words

    name_words()


def onboarding_checklist(*, organisation) -> list[OnboardingStep]:
    """The monitor's four steps for a new organisation, each done or not as its data says: documents (the
    sample or its own), the default topic and sentiment models, a first classified document, a watch-list
    entry. The steps' forms and buttons are on the monitor's page."""
    from django.urls import reverse

    from core.jobs.models import ACTIVE_STATUSES, TrainingJob
    from core.registry.services.common import active_version
    from finance_monitor.models import Document, Entity
    from finance_monitor.services.classification import APP, SENTIMENT_TASK, TOPIC_TASK
    from finance_monitor.services.defaults import JOB_KIND

    page = reverse("finance_monitor:index")
    documents = Document.objects.for_org(organisation)
    data = OnboardingStep(
        "data",
        "Start from sample data, or send your documents",
        documents.exists(),
        "The sample: 170 real financial news posts (twitter financial news, MIT) replayed over ten minutes, "
        "with a surge of negative ones. Yours: a CSV or JSONL file (a text column), a feed, or the API.",
        (
            StepLink("Try it with sample data", reverse("finance_monitor:sample"), post=True),
            StepLink("Upload a file", f"{page}#upload"),
            StepLink("Add a feed", f"{page}#sources"),
        ),
    )
    ready = all(active_version(organisation, APP, task) is not None for task in (TOPIC_TASK, SENTIMENT_TASK))
    running = list(
        TrainingJob.objects.for_org(organisation)
        .filter(kind=JOB_KIND, status__in=ACTIVE_STATUSES)
        .order_by("created_at", "id")
    )
    if ready:
        detail, links = "The topic and sentiment models classify every new document.", ()
    elif running:
        detail = "Training now (minutes on a busy CPU); documents are classified once both models are ready."
        links = tuple(StepLink(f"Follow job #{j.pk}", reverse("job-detail", args=[j.pk])) for j in running)
    else:
        detail = (
            "They train by themselves from the shipped twitter financial news sets once documents arrive."
        )
        links = (StepLink("Train the default models", reverse("finance_monitor:models-default"), post=True),)
    models = OnboardingStep("models", "Train the topic and sentiment models", ready, detail, links)
    classified = documents.filter(classified_at__isnull=False).count()
    seen = OnboardingStep(
        "classified",
        "See your documents classified",
        classified > 0,
        f"{classified} document{'s' if classified != 1 else ''} classified so far.",
        (StepLink("Browse the documents", reverse("finance_monitor:documents")),),
    )
    watch = OnboardingStep(
        "watch-list",
        "Add a company, ticker or keyword to your watch-list",
        Entity.objects.for_org(organisation).exists(),
        "Documents that name it are tagged; its own chart and alert rules follow it.",
        (StepLink("Add a watch-list entry", f"{page}#watch-list"),),
    )
    return [data, models, seen, watch]


PRODUCT = Product(
    name="finance_monitor",
    display_name="Finance monitor",
    url_prefix="finance-monitor",
    urls="finance_monitor.urls",
    api_urls="finance_monitor.api_urls",
    websocket_routes="finance_monitor.routing",
    nav=(NavEntry("Finance monitor", "finance_monitor:index"),),
    cards=(
        DashboardCard(
            "Finance monitor", "Topic and sentiment monitoring with alerts.", "finance_monitor:index"
        ),
    ),
    permissions=(
        # pushing and uploading documents: people who operate the monitor, machines with the train scope
        ProductPermission(
            "monitor.ingest", roles=frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR}), scope="train"
        ),
        # sources, watch-lists, alert rules and their webhooks
        ProductPermission("monitor.manage", roles=frozenset({Role.OWNER, Role.ADMIN}), scope="admin"),
        # an analyst's correction of a document's topic or sentiment (training feedback: the train scope)
        ProductPermission(
            "monitor.correct", roles=frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR}), scope="train"
        ),
    ),
    role_duties={Role.OPERATOR: "the finance monitor's document intake"},
    warmup=_warm_ingest,
    scope_duties={
        "train": "push and upload documents, correct their topic or sentiment",
        "admin": "feeds, watch-lists, alert rules and their webhook secrets",
    },
    beat=(
        BeatEntry("finance-monitor-poll-feeds", task="finance_monitor.poll_feeds", schedule=60.0),
        # every rule tests its latest complete bucket and the one filling (alerts.alert_rule_evaluate)
        BeatEntry("finance-monitor-evaluate-alerts", task="finance_monitor.evaluate_alerts", schedule=300.0),
        # documents left unclassified (no model yet, a worker that died, a quota reached): picked up again
        BeatEntry(
            "finance-monitor-classify-pending", task="finance_monitor.classify_pending", schedule=300.0
        ),
        # timed replays of the shipped twitter sets (the demo's feed, services.replay): what has come due
        BeatEntry("finance-monitor-replay", task="finance_monitor.replay_tick", schedule=15.0),
        # the near-copy index's bands older than FM_NEAR_DUPLICATE_WINDOW_DAYS (services.near_copies)
        BeatEntry(
            "finance-monitor-prune-near-copy-bands",
            task="finance_monitor.prune_near_copy_bands",
            schedule=86400.0,
        ),
    ),
    # Parents before children: export writes them in this order, import re-creates them in it, deletion
    # removes them in reverse (core.privacy).
    owned_models=(
        "finance_monitor.Source",
        "finance_monitor.Replay",
        "finance_monitor.FeedPoll",
        "finance_monitor.Document",
        "finance_monitor.DocumentBand",  # a near-copy index row of an original (services.near_copies)
        "finance_monitor.Entity",
        "finance_monitor.Mention",
        "finance_monitor.TrendBucket",
        "finance_monitor.AlertRule",
        "finance_monitor.Alert",
        "finance_monitor.AlertEvidence",
        "finance_monitor.Delivery",
    ),
    import_remap=trend_buckets_remap,  # per-entity buckets and alerts name their entity by id
    # The default models' training: the platform's training job, but not counted against the tenant's
    # training-job quota (metered=False): the platform provides those two models.
    job_kinds=(
        JobKind(
            "finance_monitor.train_default",
            queue=Queue.TRAIN,
            handler=_train_default,
            metered=False,
            describe=train_job_sentence,  # the platform's training in words: accuracy and macro-F1
        ),
    ),
    demo_seeder=demo.seed,
    onboarding=onboarding_checklist,
    model_tasks=(
        ModelTask(
            "topic",
            kind="classifier",
            description="The topic of a news item or post",
            examples="posts",
            text_form=LINKS_AS_WORD,
        ),
        ModelTask(
            "sentiment",
            kind="classifier",
            description="Positive, neutral or negative",
            examples="posts",
            text_form=LINKS_AS_WORD,
        ),
    ),
    meters=(
        MeterSpec(
            "documents_ingested",
            kind="flow",
            unit="document",
            label="Documents ingested",
            limits=MappingProxyType({"trial": 5_000, "pro": 500_000, "enterprise": 10_000_000}),
        ),
        MeterSpec(
            "documents_classified",
            kind="flow",
            unit="document",
            label="Documents classified",
            limits=MappingProxyType({"trial": 5_000, "pro": 500_000, "enterprise": 10_000_000}),
        ),
    ),
)
