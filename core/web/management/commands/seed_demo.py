"""Create the demo organisation and its owner (idempotent) and print how to sign in."""

import os
import secrets

from django.core.management.base import BaseCommand
from django.db import transaction

from core.tenancy import services as tenancy
from core.tenancy.models import User

DEMO_EMAIL = "demo@trellis.localhost"
DEMO_ORG = "Demo Retail"


class Command(BaseCommand):
    help = "Create the demo organisation and user, and print the credentials."

    def handle(self, *args, **options):
        password_file = os.path.join("var", "demo_password")
        with transaction.atomic():
            user = User.objects.filter(email=DEMO_EMAIL).first()
            if user is None:
                password = secrets.token_urlsafe(9)
                tenancy.organisation_sign_up(organisation_name=DEMO_ORG, email=DEMO_EMAIL, password=password)
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
        self.stdout.write(self.style.SUCCESS("Demo organisation ready: " + DEMO_ORG))
        self.stdout.write(f"  Log in at http://localhost:8000/accounts/login/ as {DEMO_EMAIL} / {password}")
