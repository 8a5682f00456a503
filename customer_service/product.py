"""The support chatbot as a product of the platform (``core.products``): its pages, API, websockets,
navigation, permissions, beat entries, model tasks and demo content, declared once."""

from types import MappingProxyType

from core.billing.meters import MeterSpec
from core.products import BeatEntry, DashboardCard, ModelTask, NavEntry, Product, ProductPermission
from core.tenancy.models import Role
from customer_service import demo
from customer_service.selectors import onboarding_checklist
from customer_service.services.grounded import generator_warm

PRODUCT = Product(
    name="customer_service",
    display_name="Customer service",
    url_prefix="customer-service",
    urls="customer_service.urls",
    api_urls="customer_service.api_urls",
    websocket_routes="customer_service.routing",
    nav=(
        NavEntry("Customer service", "customer_service:index"),
        NavEntry("Support analytics", "customer_service:analytics"),
    ),
    cards=(
        DashboardCard("Customer service", "Support chatbot and operator inbox.", "customer_service:index"),
    ),
    permissions=(
        ProductPermission(
            "inbox.operate", roles=frozenset({Role.OWNER, Role.ADMIN, Role.OPERATOR}), scope="admin"
        ),
    ),
    role_duties={Role.OPERATOR: "the chat inbox"},
    scope_duties={"admin": "the chat inbox: conversations, take-overs, notes and saved replies"},
    beat=(BeatEntry("customer-service-close-idle", task="customer_service.close_idle", schedule=900.0),),
    model_tasks=(
        ModelTask(
            "intent",
            kind="classifier",
            description="the visitor's intent, answered by its template",
            examples="questions",
            threshold_page="the set-up page (Model and thresholds)",
        ),
        ModelTask(
            "retrieval",
            kind="embedding",
            description="knowledge-base search, tuned on Q&A pairs",
            examples="question and answer pairs",
        ),
    ),
    demo_seeder=demo.seed,
    warmup=generator_warm,
    onboarding=onboarding_checklist,
    meters=(
        MeterSpec(
            "transcript_emails",
            kind="flow",
            unit="e-mail",
            label="Chat transcripts e-mailed",
            limits=MappingProxyType({"trial": 200, "pro": 20_000, "enterprise": 1_000_000}),
        ),
    ),
    # Parents before children: export writes them in this order, import re-creates them in it, deletion
    # removes them in reverse (core.privacy).
    owned_models=(
        "customer_service.BotSettings",
        "customer_service.AnswerTemplate",
        "customer_service.Article",
        "customer_service.ArticleChunk",
        "customer_service.Conversation",
        "customer_service.Message",
        "customer_service.InternalNote",
        "customer_service.SavedReply",
    ),
)
