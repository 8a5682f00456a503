"""The recommender as a product of the platform (``core.products``), declared once."""

from core.jobs.handlers import JobKind
from core.products import BeatEntry, DashboardCard, MeterSpec, ModelTask, NavEntry, Product, ProductPermission
from core.tenancy.models import Role
from recommender import demo
from recommender.kinds import RECOMMENDER
from recommender.services.catalogue import CATALOGUE_METER, catalogue_count
from recommender.services.serving import SERVED_METER
from recommender.services.training import TASK, TRAIN_JOB, train_job_handler

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
    job_kinds=(JobKind(TRAIN_JOB, queue="train", handler=train_job_handler, metered=True),),
    demo_seeder=demo.seed,
    beat=(
        # items left without a text vector (a run that never came, a worker that died): embedded again
        BeatEntry("recommender-embed-pending", task="recommender.embed_pending", schedule=300.0),
        # experiment impressions older than RECOMMENDER_IMPRESSION_RETENTION_DAYS, counted on their experiment
        BeatEntry("recommender-prune-impressions", task="recommender.prune_impressions", schedule=86400.0),
    ),
    model_tasks=(ModelTask(TASK, kind=RECOMMENDER, description="Top-k items for a user or a session"),),
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
