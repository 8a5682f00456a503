"""``manage.py flush_ledger``: write every ledger line waiting in the Redis stream into the database now."""

from django.core.management.base import BaseCommand, CommandError

from core.billing import deferred, flusher


class Command(BaseCommand):
    help = (
        "Write the ledger lines the hot path left in the Redis stream into the database, those a stopped or "
        "killed web process had read but not written included (web processes flush by themselves)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--claim-idle-ms",
            type=int,
            default=deferred.CLAIM_IDLE_MS,
            help="take over lines another flusher read this long ago and has not written "
            "(default: %(default)s; 0 takes every pending line: only when no web process runs)",
        )

    def handle(self, *args, **options) -> None:
        if not deferred.enabled():
            raise CommandError(
                "No Redis (REDIS_URL) or API_FAST_PREDICT is off: every line is in the database."
            )
        written = flusher.ledger_drain(claim_idle_ms=options["claim_idle_ms"])
        self.stdout.write(f"{written} ledger lines written.")
