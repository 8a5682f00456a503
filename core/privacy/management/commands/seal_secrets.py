"""Seal the secrets still in the clear in the database (``core.privacy.fields``), after turning encryption at
rest on: ``manage.py seal_secrets``."""

from django.core.management.base import BaseCommand, CommandError

from core.privacy import crypto
from core.privacy.fields import seal_all


class Command(BaseCommand):
    help = (
        "Seal every secret still stored in the clear (needs TRELLIS_ENCRYPT_AT_REST and TRELLIS_MASTER_KEY)."
    )

    def handle(self, *args, **options) -> None:
        if not crypto.enabled():
            raise CommandError("Encryption at rest is off (TRELLIS_ENCRYPT_AT_REST): nothing is sealed.")
        self.stdout.write(f"sealed {seal_all()} values")
