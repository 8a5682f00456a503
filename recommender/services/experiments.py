"""Experiments (A/B tests): two of the organisation's recommender versions share its traffic, each answer
served under the running experiment leaves an impression, and feedback on a served item is credited to it.

- Assignment: a user (or an anonymous session, by its id) goes to arm B when the first 8 bytes of
  sha256("<experiment id>:<subject>") read as a fraction below ``share_b``: stable for as long as the
  experiment lives, whatever process answers, with no state stored per user.
- Impressions: one row per answered request (``Impression``: subject, arm, the served ids, when), written
  only while an experiment runs; answers outside experiments write nothing.
- Attribution (``feedback_attribute``, called by event ingestion for the events it newly stored): a click,
  add-to-cart or purchase of an item by a subject marks the subject's latest impression that showed that
  item, within the experiment's window before the event, as clicked (a purchase also as converted). An
  event id sent again is not stored again, so it is never counted twice.
- Results (``experiment_results``): per arm impressions, click-through and conversion (the shares of
  impressions clicked / converted) with Wilson 95% intervals, and B - A with Newcombe's interval.
- Retention (``impressions_prune``, the daily beat task ``recommender.prune_impressions``): impressions
  older than ``RECOMMENDER_IMPRESSION_RETENTION_DAYS`` (never fewer than the longest feedback window, so
  nothing feedback may still credit goes) are deleted in batches, each batch's counts added per arm to its
  experiment's ``pruned`` in the same transaction: the results read the same before and after.
At most one experiment runs per organisation (a database constraint as well as the check here).
"""

import hashlib
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from core.errors import Conflict, InvalidInput, NotFound
from core.registry.models import ModelVersion
from core.registry.services.common import SERVABLE
from recommender import abstats
from recommender.kinds import APP, RECOMMENDER, TASK
from recommender.models import EventType, Experiment, ExperimentStatus, Impression
from recommender.services.generation import serving_changed

MAX_WINDOW_HOURS = 720  # 30 days: how far back feedback looks for the impression it answers
PRUNE_BATCH = 5_000  # impressions per prune transaction (short locks beside serving and attribution)
COUNTS = ("n", "clicks", "conversions")
FEEDBACK_TYPES = (EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE)


def arm_for(*, experiment_id: int, subject: str, share_b: float) -> str:
    """ "A" or "B" for a subject: the same answer for the same experiment and subject, always."""
    digest = hashlib.sha256(f"{experiment_id}:{subject}".encode()).digest()
    return "B" if int.from_bytes(digest[:8], "big") / 2**64 < share_b else "A"


def _version(organisation, version_id: Any, field: str) -> ModelVersion:
    if isinstance(version_id, bool) or not isinstance(version_id, int):
        raise InvalidInput(f"{field} must be a model version id.", details={"field": field})
    version = ModelVersion.objects.for_org(organisation).filter(pk=version_id).first()
    if version is None:
        raise NotFound(f"No model version {version_id} in this organisation.", details={"field": field})
    if version.app != APP or version.task != TASK or version.kind != RECOMMENDER:
        raise InvalidInput(f"Version {version_id} is not a recommender version.", details={"field": field})
    if version.status not in SERVABLE:
        raise InvalidInput(
            f"Version {version_id} is {version.status}: only ready or active versions can serve.",
            details={"field": field},
        )
    return version


def _number(value: Any, field: str, low: float, high: float, *, whole: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int if whole else (int, float))
    if not ok or not low <= value <= high:
        kind = "a whole number" if whole else "a number"
        raise InvalidInput(f"{field} must be {kind} from {low:g} to {high:g}.", details={"field": field})
    return value


def experiment_create(
    *,
    organisation,
    name: str,
    version_a: Any,
    version_b: Any,
    share_b: Any = 0.5,
    window_hours: Any = 24,
) -> Experiment:
    """A draft experiment between two servable recommender versions of the organisation."""
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > 120:
        raise InvalidInput("name is required (at most 120 characters).", details={"field": "name"})
    share = _number(share_b, "share_b", 0.01, 0.99)
    window = int(_number(window_hours, "window_hours", 1, MAX_WINDOW_HOURS, whole=True))
    a = _version(organisation, version_a, "version_a")
    b = _version(organisation, version_b, "version_b")
    if a.pk == b.pk:
        raise InvalidInput(
            "version_a and version_b must be two different versions.", details={"field": "version_b"}
        )
    return Experiment.objects.for_org(organisation).create(
        organisation=organisation, name=name, version_a=a, version_b=b, share_b=share, window_hours=window
    )


def experiment_get(*, organisation, experiment_id: int) -> Experiment:
    found = (
        Experiment.objects.for_org(organisation)
        .select_related("version_a", "version_b")
        .filter(pk=experiment_id)
        .first()
    )
    if found is None:
        raise NotFound("No such experiment.")
    return found


def experiment_list(*, organisation):
    return Experiment.objects.for_org(organisation).select_related("version_a", "version_b")


def experiment_running(*, organisation) -> Experiment | None:
    """The running experiment (at most one), with its versions: what each recommendation request asks."""
    return (
        Experiment.objects.for_org(organisation)
        .select_related("version_a", "version_b")
        .filter(status=ExperimentStatus.RUNNING)
        .first()
    )


def experiment_version_in_use(*, organisation, version) -> str | None:
    """The product contract's ``version_in_use``: the running experiment serves the version to its arm's
    users, so it may not be archived under it (a draft's versions are checked again when it starts)."""
    experiment = (
        Experiment.objects.for_org(organisation)
        .filter(status=ExperimentStatus.RUNNING)
        .filter(Q(version_a=version) | Q(version_b=version))
        .first()
    )
    if experiment is None:
        return None
    return f"the running experiment '{experiment.name}' serves it; stop the experiment first."


def experiment_start(*, organisation, experiment_id: int) -> Experiment:
    """Start a draft experiment (409 while another runs; a stopped one is not restarted: make a new one)."""
    with transaction.atomic():
        experiment = experiment_get(organisation=organisation, experiment_id=experiment_id)
        if experiment.status != ExperimentStatus.DRAFT:
            raise Conflict(f"The experiment is {experiment.status}: only a draft can start.")
        for field in ("version_a", "version_b"):
            _version(organisation, getattr(experiment, f"{field}_id"), field)  # still servable
        if experiment_running(organisation=organisation) is not None:
            raise Conflict("Another experiment is running: stop it first.")
        experiment.status, experiment.started_at = ExperimentStatus.RUNNING, timezone.now()
        try:
            with transaction.atomic():
                experiment.save(update_fields=["status", "started_at", "updated_at"])
                serving_changed(organisation=organisation)
        except IntegrityError:  # another start won the race
            raise Conflict("Another experiment is running: stop it first.") from None
    return experiment


def experiment_stop(*, organisation, experiment_id: int) -> Experiment:
    with transaction.atomic():
        experiment = experiment_get(organisation=organisation, experiment_id=experiment_id)
        if experiment.status != ExperimentStatus.RUNNING:
            raise Conflict(f"The experiment is {experiment.status}: only a running one can stop.")
        experiment.status, experiment.stopped_at = ExperimentStatus.STOPPED, timezone.now()
        experiment.save(update_fields=["status", "stopped_at", "updated_at"])
        serving_changed(organisation=organisation)
    return experiment


def impression_record(
    *, organisation, experiment: Experiment, arm: str, subject: str, items: list[str]
) -> None:
    Impression.objects.for_org(organisation).create(
        organisation=organisation,
        experiment=experiment,
        arm=arm,
        subject=subject,
        items=items,
        served_at=timezone.now(),
    )


def feedback_attribute(*, organisation, events: list[tuple[str, str, str, datetime]]) -> int:
    """Credit newly stored feedback events ``(user, item id, type, occurred_at)`` to the latest impression of
    that user that showed the item within its experiment's window; returns how many events were credited."""
    feedback = [e for e in events if e[2] in FEEDBACK_TYPES]
    if not feedback:
        return 0
    earliest = min(e[3] for e in feedback) - timedelta(hours=MAX_WINDOW_HOURS)
    candidates = (
        Impression.objects.for_org(organisation)
        .filter(
            subject__in={e[0] for e in feedback},
            served_at__gte=earliest,
            served_at__lte=max(e[3] for e in feedback),
        )
        .order_by("-served_at", "-id")
        .values_list("pk", "subject", "items", "served_at", "experiment__window_hours")
    )
    by_subject: dict[str, list[tuple]] = {}
    for row in candidates:
        by_subject.setdefault(row[1], []).append(row)
    clicked, converted, credited = set(), set(), 0
    for user, item, type_, when in feedback:
        for pk, _, items, served_at, window in by_subject.get(user, ()):
            if served_at <= when <= served_at + timedelta(hours=window) and item in items:
                clicked.add(pk)
                if type_ == EventType.PURCHASE:
                    converted.add(pk)
                credited += 1
                break
    if clicked:
        Impression.objects.for_org(organisation).filter(pk__in=clicked).update(clicked=True)
    if converted:
        Impression.objects.for_org(organisation).filter(pk__in=converted).update(converted=True)
    return credited


def experiment_results(*, organisation, experiment_id: int) -> dict[str, Any]:
    """Per arm: impressions, click-through and conversion with Wilson 95% intervals; B - A with Newcombe's."""
    experiment = experiment_get(organisation=organisation, experiment_id=experiment_id)
    counts = {
        row["arm"]: row
        for row in Impression.objects.for_org(organisation)
        .filter(experiment=experiment)
        .values("arm")
        .annotate(
            n=Count("id"),
            clicks=Count("id", filter=Q(clicked=True)),
            conversions=Count("id", filter=Q(converted=True)),
        )
    }
    arms: dict[str, dict[str, Any]] = {}
    rates: dict[str, dict[str, abstats.Proportion]] = {}
    for arm, version in (("A", experiment.version_a), ("B", experiment.version_b)):
        live: dict[str, Any] = dict(counts.get(arm, {}))
        pruned: dict[str, Any] = experiment.pruned.get(arm, {})
        row = {key: int(live.get(key, 0)) + int(pruned.get(key, 0)) for key in COUNTS}
        rates[arm] = {
            "click_through": abstats.wilson(row["clicks"], row["n"]),
            "conversion": abstats.wilson(row["conversions"], row["n"]),
        }
        arms[arm] = {
            "model_version": version.pk,
            "version": version.version,
            "method": version.method,
            "impressions": row["n"],
            **{metric: asdict(value) for metric, value in rates[arm].items()},
        }
    difference = {
        metric: asdict(abstats.difference(rates["A"][metric], rates["B"][metric]))
        for metric in ("click_through", "conversion")
    }
    return {"experiment": experiment, "arms": arms, "difference_b_minus_a": difference}


def impressions_retention_days() -> int:
    """``RECOMMENDER_IMPRESSION_RETENTION_DAYS``, never below the longest feedback window."""
    return max(int(settings.RECOMMENDER_IMPRESSION_RETENTION_DAYS), MAX_WINDOW_HOURS // 24)


def impressions_prune(*, now: datetime | None = None, batch: int = PRUNE_BATCH) -> int:
    """Delete every organisation's impressions served before the retention, ``batch`` rows per transaction,
    adding each batch's counts per arm to its experiment's ``pruned``; returns how many were deleted."""
    cut = (now or timezone.now()) - timedelta(days=impressions_retention_days())
    deleted = 0
    while done := _prune_batch(cut=cut, batch=batch):
        deleted += done
    return deleted


def _prune_batch(*, cut: datetime, batch: int) -> int:
    with transaction.atomic():
        rows = list(
            Impression.all_tenants.filter(served_at__lt=cut)
            .order_by()
            .select_for_update(skip_locked=True)  # a row attribution is marking now waits for the next run
            .values_list("id", "experiment_id", "arm", "clicked", "converted")[:batch]
        )
        if not rows:
            return 0
        tally: dict[int, dict[str, dict[str, int]]] = {}
        for _, experiment_id, arm, clicked, converted in rows:
            counts = tally.setdefault(experiment_id, {}).setdefault(arm, dict.fromkeys(COUNTS, 0))
            counts["n"] += 1
            counts["clicks"] += int(clicked)
            counts["conversions"] += int(converted)
        for experiment in Experiment.all_tenants.select_for_update().filter(pk__in=tally).order_by("pk"):
            for arm, counts in tally[experiment.pk].items():
                kept = experiment.pruned.setdefault(arm, dict.fromkeys(COUNTS, 0))
                for key, value in counts.items():
                    kept[key] = int(kept.get(key, 0)) + value
            experiment.save(update_fields=["pruned", "updated_at"])
        return Impression.all_tenants.filter(id__in=[row[0] for row in rows]).delete()[0]
