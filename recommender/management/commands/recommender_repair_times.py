"""Make readable again the organisations that stored an item expiry or an event time outside 1900-9998
(``recommender.services.events.out_of_range_times_repair``): such events are deleted, such expiries clamped.

    python manage.py recommender_repair_times
"""

from django.core.management.base import BaseCommand

from recommender.services import events


class Command(BaseCommand):
    help = (
        "Repair item expiries and event times outside 1900-9998 (PostgreSQL keeps year-1 times with a "
        "positive offset as BC timestamps that no read can return): delete such events, clamp such expiries."
    )

    def handle(self, *args, **opts):
        done = events.out_of_range_times_repair()
        self.stdout.write(f"{done['items']} item expiries clamped, {done['events']} events deleted.")
