"""Create an organisation with its owner (and a trial subscription), as signing up does; prints its slug.

python manage.py create_org --name "Acme Ltd" --owner-email owner@acme.example   # asks for a password
printf '%s\n' "$PASSWORD" | python manage.py create_org --name "Acme Ltd" --owner-email owner@acme.example
"""

import getpass
import sys

from django.core.management.base import BaseCommand, CommandError

from core.errors import TrellisError
from core.tenancy import services


class Command(BaseCommand):
    help = (
        "Create an organisation and its owner account; prints the organisation's slug. The password is "
        "asked for on a terminal, else read from the first line of stdin (--password is also accepted)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True, help="the organisation's name")
        parser.add_argument("--owner-email", required=True, help="the owner's e-mail (their login)")
        parser.add_argument("--password", default=None, help="the owner's password (visible to other users)")

    def handle(self, *args, **opts):
        password = opts["password"]
        if password is None:
            if sys.stdin.isatty():
                password = getpass.getpass("Owner's password: ")
                if getpass.getpass("Again: ") != password:
                    raise CommandError("The passwords differ.")
            else:
                password = sys.stdin.readline().rstrip("\r\n")
        try:
            organisation, user = services.organisation_sign_up(
                organisation_name=opts["name"], email=opts["owner_email"], password=password
            )
        except TrellisError as exc:
            raise CommandError(exc.message)
        self.stderr.write(f"organisation {organisation.name!r} created; owner {user.email}")
        self.stdout.write(organisation.slug)
