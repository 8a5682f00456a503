"""``manage.py flush_ledger``: write the ledger lines waiting in the Redis stream into the database, now or
(``--follow``) as they come, as the flusher process of ``LEDGER_FLUSHER=process``."""

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from core.billing import deferred, flusher


class Command(BaseCommand):
    help = (
        "Write the ledger lines the hot path left in the Redis stream into the database, those a stopped or "
        "killed web process had read but not written included (web processes flush by themselves unless "
        "LEDGER_FLUSHER=process; then run this with --follow)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--claim-idle-ms",
            type=int,
            default=deferred.CLAIM_IDLE_MS,
            help="take over lines another flusher read this long ago and has not written "
            "(default: %(default)s; 0 takes every pending line: only when no web process runs)",
        )
        parser.add_argument(
            "--follow",
            action="store_true",
            help="keep writing lines as they come until stopped (SIGTERM or Ctrl-C end it after the batch "
            "it is writing): the flusher process that LEDGER_FLUSHER=process expects",
        )

    def handle(self, *args, **options) -> None:
        if not deferred.enabled():
            raise CommandError(
                "No Redis (REDIS_URL) or API_FAST_PREDICT is off: every line is in the database."
            )
        if options["follow"]:
            stop = threading.Event()
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: stop.set())
            self.stdout.write("Writing ledger lines as they come (SIGTERM or Ctrl-C stops).")
            flusher.flush_forever(stop, claim_idle_ms=options["claim_idle_ms"])
            return
        written = flusher.ledger_drain(claim_idle_ms=options["claim_idle_ms"])
        self.stdout.write(f"{written} ledger lines written.")
