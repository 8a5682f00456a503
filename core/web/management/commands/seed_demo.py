"""Create the demo organisation and its owner (idempotent) and print how to sign in."""

import csv
import io
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from core.jobs import services as jobs
from core.registry import services as registry
from core.registry.models import ModelVersion
from core.tenancy import services as tenancy
from core.tenancy.models import Membership, User
from core.web.demo import demo_seeders

DEMO_EMAIL = "demo@trellis.localhost"
DEMO_ORG = "Demo Retail"


BITEXT = Path(__file__).resolve().parents[4] / "data" / "bitext_customer_support"


def bitext_dataset_csv() -> bytes:
    """The shipped Bitext customer-support set (CDLA-Sharing-1.0) as ``text,label`` rows."""
    source = BITEXT / "Bitext_Sample_Customer_Support_Training_Dataset.csv"
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    with source.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            writer.writerow([row["instruction"], row["intent"]])
    return out.getvalue().encode()


class Command(BaseCommand):
    help = "Create the demo organisation and user, and print the credentials."

    def handle(self, *args, **options):
        password_file = settings.VAR_DIR / "demo_password"
        with transaction.atomic():
            user = User.objects.filter(email=DEMO_EMAIL).first()
            if user is None:
                password = secrets.token_urlsafe(9)
                _org, user = tenancy.organisation_sign_up(
                    organisation_name=DEMO_ORG, email=DEMO_EMAIL, password=password
                )
                with open(password_file, "w") as handle:
                    handle.write(password)
            else:
                try:
                    with open(password_file) as handle:
                        password = handle.read().strip()
                except FileNotFoundError:
                    password = secrets.token_urlsafe(9)
                    user.set_password(password)
                    user.save(update_fields=["password"])
                    with open(password_file, "w") as handle:
                        handle.write(password)
        self._intent_model(user)
        organisation = Membership.all_tenants.select_related("organisation").get(user=user).organisation
        for name, seeder in demo_seeders().items():
            added = seeder(organisation)
            if added:
                self.stdout.write(f"  {name}: {added}")
        self.stdout.write(self.style.SUCCESS("Demo organisation ready: " + DEMO_ORG))
        port = os.environ.get("PORT", "8000")  # bin/run-all serves on $PORT
        self.stdout.write(f"  Log in at http://localhost:{port}/accounts/login/ as {DEMO_EMAIL} / {password}")

    def _intent_model(self, user) -> None:
        """Give the demo a working intent model at once: a head on frozen embeddings (a minute on CPU)."""
        organisation = Membership.all_tenants.select_related("organisation").get(user=user).organisation
        if ModelVersion.objects.for_org(organisation).filter(app="customer_service", task="intent").exists():
            return
        self.stdout.write(
            "Training the demo intent model on the Bitext customer-support set (about a minute)..."
        )
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
            app="customer_service",
            task="intent",
            config=None,  # the fast default: seconds on CPU
            follow_up={"method": "lora", "time_budget_s": 900},  # the worker fine-tunes it next
        )
        jobs.job_execute(job_id=job.pk)
        job.refresh_from_db()
        if job.status != "succeeded":
            self.stderr.write(f"The demo model did not train: {job.error}")
            return
        self.stdout.write(
            f"  intent model v{job.result['version']}: accuracy {job.result['accuracy']:.3f} on held-out rows"
        )
