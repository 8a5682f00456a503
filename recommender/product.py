"""The recommender as a product of the platform (``core.products``), declared once."""

from core.jobs.handlers import JobKind
from core.products import (
    BeatEntry,
    DashboardCard,
    FastCall,
    FastRoute,
    MeterSpec,
    ModelTask,
    NavEntry,
    OnboardingStep,
    Product,
    ProductPermission,
    StepLink,
)
from core.registry.describe import train_job_sentence
from core.tenancy.models import Role
from recommender import api, demo
from recommender.kinds import RECOMMENDER
from recommender.services import text
from recommender.services.catalogue import CATALOGUE_METER, catalogue_count
from recommender.services.events import EVENTS_METER, events_count
from recommender.services.experiments import experiment_version_in_use
from recommender.services.serving import SERVED_METER
from recommender.services.snapshot import snapshot_cached
from recommender.services.training import TASK, TRAIN_JOB, train_job_handler
from recommender.services.tuning import TUNE_JOB, tune_job_handler


def onboarding_checklist(*, organisation) -> list[OnboardingStep]:
    """The recommender's three steps for a new organisation, each done or not as its data says: a catalogue
    (the sample shop or its own), behaviour (events), a trained model. Popularity answers from the second
    step on; the explorer on the page shows a user's recommendations at any time."""
    from django.urls import reverse

    from core.jobs.models import ACTIVE_STATUSES, TrainingJob
    from core.registry.models import ModelVersion
    from recommender.kinds import APP
    from recommender.models import Event, Item

    page = reverse("recommender:index")
    catalogue = OnboardingStep(
        "catalogue",
        "Load the sample shop, or upload your catalogue",
        Item.objects.for_org(organisation).exists(),
        "The sample: a gift shop's items and 5,000 purchases by 162 customers (Online Retail, UCI,"
        " CC BY 4.0). Yours: a CSV or JSONL file of items (id, title, categories, price, ...).",
        (
            StepLink("Load the sample shop", reverse("recommender:sample"), post=True),
            StepLink("Upload your catalogue", f"{page}#catalogue"),
        ),
    )
    behaviour = OnboardingStep(
        "events",
        "Send behaviour: views, clicks and purchases",
        Event.objects.for_org(organisation).exists(),
        "A CSV or JSONL file of events (id, user, item, type, occurred_at), or the API. Popular items are"
        " recommended from the first event on.",
        (StepLink("Upload events", f"{page}#events"), StepLink("Try the explorer", f"{page}#explorer")),
    )
    running = (
        TrainingJob.objects.for_org(organisation)
        .filter(kind=TRAIN_JOB, status__in=ACTIVE_STATUSES)
        .order_by("-created_at", "-id")
        .first()
    )
    trained = ModelVersion.objects.for_org(organisation).filter(app=APP, task=TASK).exists()
    links: tuple[StepLink, ...] = (StepLink("Train a model", f"{page}#train"),)
    if running is not None:
        detail = f"Training now: job #{running.pk}."
        links = (StepLink(f"Follow job #{running.pk}", reverse("job-detail", args=[running.pk])),)
    elif trained:
        detail = "A trained model answers; train again as behaviour grows."
    else:
        detail = "EASE learns which items go together from your events (a minute on the sample shop)."
    model = OnboardingStep("train", "Train a model on your events", trained, detail, links)
    return [catalogue, behaviour, model]


def _recommendations(call: FastCall) -> dict:
    return api.recommendations_answer(
        organisation=call.organisation, api_key=call.api_key, params=call.params
    )


def _similar(call: FastCall) -> dict:
    return api.similar_answer(
        organisation=call.organisation, api_key=call.api_key, item_id=call.args[0] or "", params=call.params
    )


# The two serving reads, below Django for an ordinary API-key call (core.api.fast_routes; same answers).
# An organisation's first call in a web process builds its catalogue snapshot (seconds at 100,000 items): on
# the routes' cold pool, while the warm organisations' calls go on.
FAST_ROUTES = (
    FastRoute(
        r"recommendations",
        permission="models.predict",
        answer=_recommendations,
        meter=SERVED_METER,
        ready=snapshot_cached,
    ),
    FastRoute(
        r"items/([^/]+)/similar",
        permission="models.predict",
        answer=_similar,
        meter=SERVED_METER,
        ready=snapshot_cached,
    ),
)


PRODUCT = Product(
    name="recommender",
    display_name="Recommender",
    url_prefix="recommender",
    urls="recommender.urls",
    api_urls="recommender.api_urls",
    nav=(NavEntry("Recommender", "recommender:index"),),
    cards=(DashboardCard("Recommender", "Personalised top-k recommendations.", "recommender:index"),),
    permissions=(
        # the catalogue and behaviour: people who operate the shop's data, machines with the train scope
        ProductPermission(
            "recommender.ingest", roles=frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR}), scope="train"
        ),
        # event weights
        ProductPermission("recommender.manage", roles=frozenset({Role.OWNER, Role.ADMIN}), scope="admin"),
    ),
    role_duties={Role.OPERATOR: "the recommender's catalogue intake"},
    scope_duties={
        "train": "push and upload catalogue items and events",
        "admin": "experiments and event weights",
    },
    # its job page says the model's NDCG@10 and HR@10 in a sentence (core's describer of trained models)
    job_kinds=(
        JobKind(
            TRAIN_JOB, queue="train", handler=train_job_handler, metered=True, describe=train_job_sentence
        ),
        # the item text tuned on behaviour: the pairs built from the events, then the platform's training
        JobKind(TUNE_JOB, queue="train", handler=tune_job_handler, metered=True, describe=train_job_sentence),
    ),
    demo_seeder=demo.seed,
    onboarding=onboarding_checklist,
    version_in_use=experiment_version_in_use,  # a running experiment's arms may not be archived under it
    fast_routes=FAST_ROUTES,
    beat=(
        # items left without a text vector (a run that never came, a worker that died): embedded again
        BeatEntry("recommender-embed-pending", task="recommender.embed_pending", schedule=300.0),
        # experiment impressions older than RECOMMENDER_IMPRESSION_RETENTION_DAYS, counted on their experiment
        BeatEntry("recommender-prune-impressions", task="recommender.prune_impressions", schedule=86400.0),
    ),
    model_tasks=(
        ModelTask(
            TASK, kind=RECOMMENDER, description="Top-k items for a user or a session", examples="users"
        ),
        # the catalogue's text model: the shared encoder with a LoRA adapter tuned on behaviour
        # (recommender.services.tuning); once active, every item is embedded again by it
        ModelTask(
            text.TEXT_TASK,
            kind="embedding",
            description="Item text tuned on what customers take together",
            examples="item pairs",
            on_activate=text.item_text_activated,
        ),
    ),
    meters=(
        MeterSpec(
            SERVED_METER,
            kind="flow",
            unit="recommendation request",
            label="Recommendations served",
            limits={"trial": 10_000, "pro": 2_000_000, "enterprise": 50_000_000},
        ),
        MeterSpec(
            CATALOGUE_METER,
            kind="stock",
            unit="item",
            label="Catalogue items",
            limits={"trial": 5_000, "pro": 200_000, "enterprise": 2_000_000},
            counter=catalogue_count,
        ),
        # behaviour is stored for good (training reads all of it): a trial holds a MovieLens-small or the
        # demo's Online Retail slice several times over
        MeterSpec(
            EVENTS_METER,
            kind="stock",
            unit="event",
            label="Stored events",
            limits={"trial": 200_000, "pro": 20_000_000, "enterprise": 500_000_000},
            counter=events_count,
        ),
    ),
    # Parents before children: export writes them in this order, import re-creates them in it, deletion
    # removes them in reverse (core.privacy).
    owned_models=(
        "recommender.RecommenderSettings",
        "recommender.Item",
        "recommender.Event",
        "recommender.Experiment",
        "recommender.Impression",
    ),
)
