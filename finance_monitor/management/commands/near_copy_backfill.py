"""Write the near-copy bands (``finance_monitor.services.near_copies``) of the originals received in the last
``FM_NEAR_DUPLICATE_WINDOW_DAYS`` that have none: documents stored before the near-copy rule existed
(migration 0009) or while ``FM_NEAR_DUPLICATES`` was off, whose near copies are otherwise not found.
Idempotent: run it again and it writes only what is missing.

    python manage.py near_copy_backfill --org acme      # one organisation, here
    python manage.py near_copy_backfill --all --queue   # every organisation, on a worker (default queue)
"""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.tenancy.models import Organisation
from finance_monitor.services import near_copies


class Command(BaseCommand):
    help = "Write the near-copy bands of the window's original documents that have none."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--org", help="organisation slug")
        which.add_argument("--all", action="store_true", help="every organisation")
        parser.add_argument("--batch", type=int, default=500, help="documents per transaction")
        parser.add_argument("--queue", action="store_true", help="run it on a worker, not here")

    def handle(self, *args, **opts):
        if not settings.FM_NEAR_DUPLICATES:
            raise CommandError("FM_NEAR_DUPLICATES is off: the ingest would not look the bands up.")
        if opts["batch"] < 1:
            raise CommandError("--batch must be at least 1.")
        organisation = None
        if opts["org"]:
            organisation = Organisation.objects.filter(slug=opts["org"], deleted_at__isnull=True).first()
            if organisation is None:
                raise CommandError(f"No organisation with slug '{opts['org']}'.")
        if opts["queue"]:
            task_id = near_copies.near_copy_bands_backfill_enqueue(organisation=organisation)
            self.stdout.write(f"Queued as task {task_id} (default queue).")
            return
        counts = near_copies.near_copy_bands_backfill(organisation=organisation, batch=opts["batch"])
        self.stdout.write(
            self.style.SUCCESS(
                f"{counts['documents']} documents given {counts['bands']} bands"
                f" ({counts['short']} too short to have any)."
            )
        )
