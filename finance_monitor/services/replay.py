"""A timed replay of the shipped twitter financial news texts (MIT, ``data/twitter_financial_news``) into
an organisation's monitor, through the product's own ingest path (``documents.documents_ingest``): the
demo's feed, and a way to watch the whole pipeline (classification, trends, alerts) work on real texts.

A replay's timeline (``ReplayPlan``), from its first tick (``started_at``):

- **baseline**: ``baseline_hours`` of past documents, ``baseline_per_hour`` an hour, published over the
  hours before the start (so the alert rules have a trailing baseline at once), pushed on the first tick;
- **live**: ``live_per_minute`` documents a minute for ``live_minutes``, published as they arrive;
- **surge**: at ``surge_after_s``, ``surge_size`` real *negative* texts of the set at once (the planted
  negative surge), on top of the live stream.

Baseline and live texts are the set in a seeded shuffle (its natural mix: about 15% negative); the surge's
texts are kept out of them. Every document carries a client id (``replay-<id>-<part><n>``), so a tick that
is retried or runs twice stores nothing twice. Beat's ``finance_monitor.replay_tick`` calls
``replays_tick`` every few seconds; each tick pushes only what has come due. Once the surge is pushed and
classified, the tick queues the evaluation of the organisation's enabled alert rules (rather than waiting for
beat's five-minute evaluation), so the surge's alert fires within minutes. The first tick also queues the
default models' training when the organisation has none (``services.defaults``).
"""

import csv
import gzip
import logging
import random
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.celery import app as celery_app
from core.errors import InvalidInput, QuotaExceeded
from core.jobs.queues import Queue
from finance_monitor.models import AlertRule, Replay, SourceKind
from finance_monitor.services import documents as docs
from finance_monitor.services.classification import pending_documents
from finance_monitor.services.defaults import DATA, FILES

log = logging.getLogger(__name__)

EVALUATE_TASK = "finance_monitor.evaluate_alert_rule"


@dataclass(frozen=True)
class ReplayPlan:
    baseline_hours: int = 24
    baseline_per_hour: int = 40
    live_per_minute: int = 6
    live_minutes: int = 30
    surge_after_s: int = 120
    surge_size: int = 60
    seed: int = 7

    def check(self) -> None:
        for name, value in asdict(self).items():
            if not isinstance(value, int) or value < 0:
                raise InvalidInput(f"{name} must be a whole number >= 0.", details={"field": name})
        calm, negatives = _texts(self.seed)
        wanted = self.baseline_hours * self.baseline_per_hour + self.live_per_minute * self.live_minutes
        if wanted > len(calm) or self.surge_size > len(negatives):
            raise InvalidInput(
                f"The shipped set holds {len(calm)} texts for the baseline and live stream and"
                f" {len(negatives)} negative ones for the surge;"
                f" this plan needs {wanted} and {self.surge_size}."
            )


@lru_cache(maxsize=4)
def _texts(seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the shuffled set without the surge's reserve, the shuffled negative texts)."""
    with gzip.open(DATA / FILES["sentiment"], "rt", encoding="utf-8", newline="") as handle:
        rows = [(row["text"].strip(), row["label"]) for row in csv.DictReader(handle) if row["text"].strip()]
    random.Random(seed).shuffle(rows)
    negatives = tuple(text for text, label in rows if label == "negative")
    reserve = set(negatives[: len(negatives) // 2])  # the surge draws from these; the stream never does
    calm = tuple(text for text, _ in rows if text not in reserve)
    return calm, negatives[: len(negatives) // 2]


def replay_start(*, organisation, plan: ReplayPlan | None = None, source_name: str = "") -> Replay:
    """A new replay into a source of its own; it starts at the next tick."""
    plan = plan or ReplayPlan()
    plan.check()
    source_name = (source_name or "Replay: twitter financial news").strip()[:120]
    with transaction.atomic():
        source = docs.source_for(organisation=organisation, kind=SourceKind.API, name=source_name)
        return Replay.objects.for_org(organisation).create(
            organisation=organisation, source=source, plan=asdict(plan)
        )


def _push(replay: Replay, items: list[docs.DocumentIn]) -> int:
    created = 0
    for start in range(0, len(items), docs.MAX_BATCH):
        batch = items[start : start + docs.MAX_BATCH]
        result = docs.documents_ingest(organisation=replay.organisation, items=batch, source=replay.source)
        created += len(result.created)
    return created


def _baseline(replay: Replay, plan: ReplayPlan, calm: tuple[str, ...]) -> list[docs.DocumentIn]:
    count = plan.baseline_hours * plan.baseline_per_hour
    assert replay.started_at is not None
    first = replay.started_at - timedelta(hours=plan.baseline_hours)
    step = timedelta(hours=plan.baseline_hours) / max(count, 1)
    return [
        docs.DocumentIn(text=calm[i], published_at=first + step * i, client_id=f"replay-{replay.pk}-b{i}")
        for i in range(count)
    ]


def replay_tick(*, replay: Replay, now: datetime | None = None) -> dict[str, int | bool]:
    """Push what has come due by ``now``; what this tick did."""
    now = now or timezone.now()
    plan = ReplayPlan(**replay.plan)
    calm, negatives = _texts(plan.seed)
    done: dict[str, int | bool] = {"baseline": 0, "live": 0, "surge": 0, "evaluate": False}
    if replay.started_at is None:
        replay.started_at = now
        replay.save(update_fields=["started_at", "updated_at"])
        if settings.FM_DEFAULT_MODELS_ON_FIRST_USE:
            from finance_monitor.services.defaults import monitor_defaults_install_once

            monitor_defaults_install_once(organisation=replay.organisation)
    if replay.backfilled_at is None:
        done["baseline"] = _push(replay, _baseline(replay, plan, calm))
        replay.backfilled_at = now
    elapsed = (now - replay.started_at).total_seconds()
    offset = plan.baseline_hours * plan.baseline_per_hour
    due = min(plan.live_per_minute * plan.live_minutes, int(elapsed * plan.live_per_minute / 60))
    if due > replay.live_pushed:
        done["live"] = _push(
            replay,
            [
                docs.DocumentIn(text=calm[offset + i], client_id=f"replay-{replay.pk}-l{i}")
                for i in range(replay.live_pushed, due)
            ],
        )
        replay.live_pushed = due
    if replay.surged_at is None and elapsed >= plan.surge_after_s:
        done["surge"] = _push(
            replay,
            [
                docs.DocumentIn(text=negatives[i], client_id=f"replay-{replay.pk}-s{i}")
                for i in range(plan.surge_size)
            ],
        )
        replay.surged_at = now
    surged, evaluated = replay.surged_at is not None, replay.evaluated_at is not None
    if surged and not evaluated and not pending_documents(organisation=replay.organisation).exists():
        done["evaluate"] = True
        replay.evaluated_at = now
        _evaluate_rules(replay.organisation)
    if replay.evaluated_at is not None and replay.live_pushed >= plan.live_per_minute * plan.live_minutes:
        replay.finished_at = now
    replay.save()
    return done


def _evaluate_rules(organisation) -> None:
    """Queue the evaluation of the organisation's enabled alert rules after commit."""
    rule_ids = list(AlertRule.objects.for_org(organisation).filter(enabled=True).values_list("pk", flat=True))

    def send() -> None:
        for rule_id in rule_ids:
            celery_app.send_task(EVALUATE_TASK, args=[rule_id], queue=Queue.DEFAULT)

    transaction.on_commit(send)


def replays_tick(*, now: datetime | None = None) -> int:
    """Beat: one tick of every unfinished replay (the one cross-tenant read here); the replays ticked."""
    ticked = 0
    for replay_id in Replay.all_tenants.filter(finished_at__isnull=True).values_list("pk", flat=True):
        with transaction.atomic():
            replay = (
                Replay.all_tenants.select_for_update(skip_locked=True)
                .select_related("organisation", "source")
                .filter(pk=replay_id, finished_at__isnull=True, organisation__deleted_at__isnull=True)
                .first()
            )
            if replay is None:  # another tick holds it, or it is done
                continue
            try:
                with transaction.atomic():
                    replay_tick(replay=replay, now=now)
            except QuotaExceeded as exc:  # the plan's documents are used up: the replay stops, saying why
                replay.last_error, replay.finished_at = exc.message, timezone.now()
                replay.save(update_fields=["last_error", "finished_at", "updated_at"])
        ticked += 1
    return ticked
