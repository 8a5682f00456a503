"""Create the demo organisation and its owner (idempotent), let every product add its demo content
(``Product.demo_seeder``), and print how to sign in."""

import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction

from core.billing import services as billing
from core.products import products
from core.tenancy import services as tenancy
from core.tenancy.models import Membership, User

DEMO_EMAIL = "demo@trellis.localhost"
DEMO_ORG = "Demo Retail"


class _Log:
    """What a product's demo seeder writes: progress to stdout, failures to stderr."""

    def __init__(self, command: BaseCommand) -> None:
        self.command = command

    def info(self, line: str) -> None:
        self.command.stdout.write(line)

    def error(self, line: str) -> None:
        self.command.stderr.write(line)


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
        organisation = Membership.all_tenants.select_related("organisation").get(user=user).organisation
        log = _Log(self)
        for product in products():
            if product.demo_seeder is None:
                continue
            added = product.demo_seeder(organisation, log)
            if added:
                self.stdout.write(f"  {product.display_name}: {added}")
        # what the seeders spent (training jobs, stored records, models) stays out of what the visitor can try
        billing.subscription_cover_set_up(organisation=organisation, reason="demo set-up")
        self.stdout.write(self.style.SUCCESS("Demo organisation ready: " + DEMO_ORG))
        port = os.environ.get("PORT", "8000")  # bin/run-all serves on $PORT
        self.stdout.write(f"  Log in at http://localhost:{port}/accounts/login/ as {DEMO_EMAIL} / {password}")
