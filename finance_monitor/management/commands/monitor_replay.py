"""Start a timed replay of the shipped twitter financial news texts into an organisation's monitor
(``finance_monitor.services.replay``); beat's ``finance_monitor.replay_tick`` pushes it as it comes due, or
``--foreground`` ticks it here until it is done (classification still runs on the worker's ``infer`` queue).

    python manage.py monitor_replay --org acme --surge-after-s 300 --surge-size 80
"""

import time
from dataclasses import fields

from django.core.management.base import BaseCommand, CommandError

from core.errors import TrellisError
from core.tenancy.models import Organisation
from finance_monitor.models import Replay
from finance_monitor.services import replay


class Command(BaseCommand):
    help = "Replay the shipped twitter financial news texts as a timed feed with a planted negative surge."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organisation slug")
        parser.add_argument("--source", default="", help="the source's name (default: Replay: twitter ...)")
        defaults = replay.ReplayPlan()
        for field in fields(replay.ReplayPlan):
            parser.add_argument(
                f"--{field.name.replace('_', '-')}", type=int, default=getattr(defaults, field.name)
            )
        parser.add_argument("--foreground", action="store_true", help="tick here every 5 s until done")

    def handle(self, *args, **opts):
        organisation = Organisation.objects.filter(slug=opts["org"], deleted_at__isnull=True).first()
        if organisation is None:
            raise CommandError(f"No organisation with slug '{opts['org']}'.")
        plan = replay.ReplayPlan(**{f.name: opts[f.name] for f in fields(replay.ReplayPlan)})
        try:
            started = replay.replay_start(organisation=organisation, plan=plan, source_name=opts["source"])
        except TrellisError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Replay {started.pk} into source '{started.source.name}' queued.")
        if not opts["foreground"]:
            return
        while True:
            current = Replay.objects.for_org(organisation).select_related("organisation", "source")
            one = current.get(pk=started.pk)
            if one.finished_at is not None:
                break
            done = replay.replay_tick(replay=one)
            self.stdout.write(", ".join(f"{k} {v}" for k, v in done.items()))
            time.sleep(5)
        self.stdout.write(self.style.SUCCESS(f"Replay {started.pk} done."))
