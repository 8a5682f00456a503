"""Load a GroupLens MovieLens folder (movies.csv, ratings.csv) into an organisation for evaluation
(``recommender.services.movielens``).

    python manage.py recommender_import_movielens --org acme --path ../shared/data/movielens_latest_small
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import TrellisError
from core.tenancy.models import Organisation
from recommender.services import movielens

DEFAULT_PATH = "../shared/data/movielens_latest_small"


class Command(BaseCommand):
    help = (
        "Load MovieLens (GroupLens format: movies.csv, ratings.csv) into an organisation for EVALUATION. "
        "The GroupLens terms allow research use only: never ship the data, and never sell or serve to "
        "customers a model trained on it."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="the organisation's slug or id")
        parser.add_argument(
            "--path", default=DEFAULT_PATH, help=f"the GroupLens folder (default {DEFAULT_PATH})"
        )

    def handle(self, *args, **opts):
        key = str(opts["org"]).strip()
        found = Organisation.objects.filter(deleted_at__isnull=True)
        organisation = found.filter(slug=key).first() or (
            found.filter(pk=int(key)).first() if key.isdigit() else None
        )
        if organisation is None:
            raise CommandError(f"No organisation with slug or id '{key}'.")
        try:
            report = movielens.movielens_import(
                organisation=organisation, path=Path(opts["path"]), progress=self.stdout.write
            )
        except TrellisError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{organisation.slug}: {report.items_created} movies added, {report.items_updated} updated; "
                f"{report.events_created} ratings stored, {report.events_existing} already there, "
                f"{report.rejected} rows rejected."
            )
        )
        for line in report.first_rejections:
            self.stdout.write(f"  rejected {line}")
        self.stdout.write(
            "Research use only (GroupLens terms): evaluate with it; do not sell what it trains."
        )
