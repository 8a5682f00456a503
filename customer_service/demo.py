"""The demo organisation's chatbot (``seed_demo``): an intent model trained on the shipped Bitext set,
answers for the intents it knows and a small knowledge base, so the widget answers at once after
``make run``."""

import csv
from pathlib import Path

from core.jobs import services as jobs
from core.products import DemoLog
from core.registry import services as registry
from core.registry.models import ModelVersion
from customer_service import services
from customer_service.models import AnswerTemplate, Article
from customer_service.services.common import csv_bytes

BITEXT = Path(__file__).resolve().parents[1] / "data" / "bitext_customer_support"

ANSWERS = {
    "cancel_order": (
        "You can cancel an order that has not shipped yet from Your orders > Cancel. If "
        "it has shipped, refuse the delivery or start a return instead."
    ),
    "change_order": (
        "Orders can be changed within one hour of purchase from Your orders > Edit. After"
        " that, cancel it and place a new one."
    ),
    "change_shipping_address": (
        "Go to Your orders, open the order and choose Change address. This is possible "
        "until the parcel is handed to the carrier."
    ),
    "check_cancellation_fee": (
        "Cancelling is free until the order ships. After that, return shipping costs apply."
    ),
    "check_invoice": (
        "All your invoices are under Account > Invoices, where you can view and download them."
    ),
    "check_payment_methods": ("We accept Visa, Mastercard, American Express, PayPal and bank transfer."),
    "check_refund_policy": (
        "You can return any item within 30 days for a full refund, as long as it is unused."
    ),
    "contact_customer_service": (
        "Our team is available Monday to Friday, 8am to 8pm, by chat, phone (0800 123 "
        "456) or e-mail (help@demo-retail.example)."
    ),
    "create_account": (
        "Choose Sign up at the top of any page and follow the steps. It takes about a minute."
    ),
    "delete_account": (
        "You can close your account under Account > Privacy > Delete account. Open orders"
        " must be completed first."
    ),
    "delivery_options": (
        "We offer standard (3-5 days, free over 50), express (next day) and click-and-collect."
    ),
    "delivery_period": (
        "Standard delivery takes 3 to 5 working days, express delivery arrives the next working day."
    ),
    "edit_account": ("You can change your name, e-mail and preferences under Account > Profile."),
    "get_invoice": ("Open the order under Your orders and choose Download invoice."),
    "get_refund": (
        "Start a refund from Your orders > Return or refund. The money is back on your "
        "card within 5 working days of our receiving the item."
    ),
    "newsletter_subscription": (
        "Subscribe or unsubscribe under Account > Communication preferences, or use the "
        "link at the bottom of any newsletter."
    ),
    "payment_issue": (
        "Sorry about that. Please check the card details and your bank's approval, then "
        "try again. If it still fails, try another payment method."
    ),
    "place_order": ("Add the items to your basket, then choose Checkout and follow the steps."),
    "recover_password": ("Choose Forgot password on the login page and we will e-mail you a reset link."),
    "registration_problems": (
        "Please check that your e-mail address is not already registered and that the "
        "password has at least 8 characters. If it still fails, we can help here."
    ),
    "review": ("Thank you! You can review any item you bought from Your orders > Write a review."),
    "set_up_shipping_address": ("Add a delivery address under Account > Addresses > Add address."),
    "switch_account": ("Log out from the menu at the top right, then log in with the other account."),
    "track_order": ("Open Your orders and choose Track parcel to follow your delivery."),
    "track_refund": (
        "Refunds show under Your orders > Returns with their status; they reach your card"
        " within 5 working days."
    ),
}

ARTICLES = [
    (
        "Store opening hours",
        (
            "Our stores are open Monday to Saturday from 9am to 7pm and on Sunday from 11am "
            "to 5pm. On public holidays most stores open from 10am to 4pm."
        ),
    ),
    (
        "Gift cards",
        (
            "Gift cards are sold in every store and online, from 10 to 500. They are valid "
            "for two years and can be used for several purchases until the balance is spent. "
            "Check the balance under Account > Gift cards."
        ),
    ),
    (
        "Warranty and repairs",
        (
            "Every product has a two-year warranty. If an item breaks, bring it to any store "
            "or start a repair request online; we repair it, replace it or refund it."
        ),
    ),
]


def bitext_dataset_csv() -> bytes:
    """The shipped Bitext customer-support set (CDLA-Sharing-1.0) as ``text,label`` rows."""
    source = BITEXT / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    with source.open(encoding="utf-8", newline="") as handle:
        rows = ((r["instruction"], r["intent"]) for r in csv.DictReader(handle))
        return csv_bytes(("text", "label"), rows)


def intent_model(organisation, log: DemoLog) -> None:
    """Give the demo a working intent model at once: a head on frozen embeddings (a minute on CPU)."""
    if (
        ModelVersion.objects.for_org(organisation)
        .filter(app=services.APP, task=services.INTENT_TASK)
        .exists()
    ):
        return
    log.info("Training the demo intent model on the Bitext customer-support set (about a minute)...")
    dataset = registry.dataset_upload(
        organisation=organisation,
        name="bitext-intents",
        task="classification",
        data=bitext_dataset_csv(),
        filename="bitext.csv",
    )
    job = registry.model_train_start(
        organisation=organisation,
        dataset_id=dataset.pk,
        app=services.APP,
        task=services.INTENT_TASK,
        config=None,  # the fast default: seconds on CPU
        follow_up={"method": "lora", "time_budget_s": 900},  # the worker fine-tunes it next
    )
    jobs.job_execute(job_id=job.pk)
    job.refresh_from_db()
    if job.status != "succeeded":
        log.error(f"The demo model did not train: {job.error}")
        return
    log.info(
        f"  intent model v{job.result['version']}: accuracy {job.result['accuracy']:.3f} on held-out rows"
    )


def seed(organisation, log: DemoLog) -> str:
    """Idempotent: trains no second model, and adds nothing when the organisation already has answers or
    articles."""
    intent_model(organisation, log)
    if (
        AnswerTemplate.objects.for_org(organisation).exists()
        or Article.objects.for_org(organisation).exists()
    ):
        return ""
    for intent, body in ANSWERS.items():
        services.template_save(organisation=organisation, intent=intent, body=body)
    for title, body in ARTICLES:
        services.article_save(organisation=organisation, title=title, body=body)
    services.bot_settings_update(organisation=organisation, bot_name="Demo Retail assistant")
    return f"{len(ANSWERS)} answer templates and {len(ARTICLES)} knowledge-base articles"
