"""Sample data for a new organisation's chatbot: a small BANKING77 slice (shipped in ``data/banking77``,
CC BY 4.0) as an intent dataset to train on, and an answer for each of its eight intents.

Loaded from the set-up page's checklist. The dataset goes through the ordinary upload (validated, split,
counted against the plan's stored records like any upload); loading it again changes nothing, and answers
the organisation already wrote for these intents are kept.
"""

import csv
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction

from core.registry import services as registry
from core.registry.models import Dataset
from customer_service.models import AnswerTemplate, BotSettings
from customer_service.services.bot import bot_settings_for
from customer_service.services.common import csv_bytes
from customer_service.services.knowledge import template_save

BANKING77 = Path(__file__).resolve().parents[2] / "data" / "banking77" / "train_slice.csv"
SAMPLE_DATASET = "sample-banking77"

SAMPLE_ANSWERS = {
    "card_arrival": (
        "New cards arrive within 5 working days of the order. If yours has not arrived after 7 days, "
        "tell us here and we will send a replacement."
    ),
    "lost_or_stolen_card": (
        "Freeze your card at once in the app under Cards > Freeze, then order a replacement there. "
        "Nobody can pay with a frozen card."
    ),
    "exchange_rate": (
        "We use the interbank exchange rate, updated every minute, plus 0.5% on weekends. The app shows "
        "the rate before you confirm."
    ),
    "top_up_failed": (
        "A top-up fails when the bank declines it or the card details are out of date. Check the card in "
        "the app and try again; no money leaves your account for a failed top-up."
    ),
    "change_pin": "You can change your PIN at any of our ATMs, or see it in the app under Cards > Show PIN.",
    "apple_pay_or_google_pay": (
        "Add your card to Apple Pay or Google Pay from the app: Cards > Add to wallet, and follow the steps."
    ),
    "atm_support": (
        "Withdrawals are free up to 200 a month at any ATM showing the Visa or Mastercard logo, "
        "and cost 2% after that."
    ),
    "terminate_account": (
        "You can close your account in the app under Profile > Close account, once its balance is zero."
    ),
}


@dataclass(frozen=True)
class SampleData:
    dataset: Dataset
    dataset_created: bool
    answers_added: int


def _sample_csv() -> bytes:
    with BANKING77.open(encoding="utf-8", newline="") as handle:
        return csv_bytes(("text", "label"), ((r["text"], r["category"]) for r in csv.DictReader(handle)))


def sample_dataset(*, organisation) -> Dataset | None:
    return Dataset.objects.for_org(organisation).filter(name=SAMPLE_DATASET).order_by("-version").first()


def sample_data_load(*, organisation) -> SampleData:
    """Idempotent: the sample dataset is uploaded once (metered as an upload), and an answer is added only
    for a sample intent that has none."""
    bot_settings_for(organisation=organisation)  # the row a second, concurrent click waits on
    with transaction.atomic():
        BotSettings.objects.for_org(organisation).select_for_update().get()
        dataset = sample_dataset(organisation=organisation)
        created = dataset is None
        if dataset is None:
            dataset = registry.dataset_upload(
                organisation=organisation,
                name=SAMPLE_DATASET,
                task="classification",
                data=_sample_csv(),
                filename="banking77-sample.csv",
            )
        answered = set(
            AnswerTemplate.objects.for_org(organisation)
            .filter(intent__in=list(SAMPLE_ANSWERS))
            .values_list("intent", flat=True)
        )
        missing = [intent for intent in SAMPLE_ANSWERS if intent not in answered]
        for intent in missing:
            template_save(organisation=organisation, intent=intent, body=SAMPLE_ANSWERS[intent])
    return SampleData(dataset=dataset, dataset_created=created, answers_added=len(missing))
