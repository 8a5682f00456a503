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
            self.stdout.write("Writing ledger lines as they come (SIGTERM or Ctrl-C stops).")
            follow(claim_idle_ms=options["claim_idle_ms"])
            return
        written = flusher.ledger_drain(claim_idle_ms=options["claim_idle_ms"])
        self.stdout.write(f"{written} ledger lines written.")


def follow(*, claim_idle_ms: int) -> None:
    """``flush_forever`` until SIGTERM or SIGINT, then return after the batch being written.

    The flusher runs in a thread of its own and the main thread (where Python runs signal handlers) only waits
    for it: a handler that sets the stop event on the thread that is waiting on that event can land while the
    thread holds the event's lock, and then waits for itself forever (``bin/run-all`` stopped everything but
    the flusher, which had to be killed)."""
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            flusher.flush_forever(stop, claim_idle_ms=claim_idle_ms)
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            failed.append(exc)

    worker = threading.Thread(target=run, name="ledger-flusher")
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    for signum in previous:
        signal.signal(signum, lambda *_: stop.set())
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.5)
    finally:
        stop.set()
        worker.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if failed:
        raise failed[0]
