"""Batch inference over a product's own rows, as an ``infer`` job (``ml.rows_infer``), chunked and metered.

The upload counterpart is ``core.registry.batch`` (a file in, a CSV out); here a product's rows go in and
its own sink takes the predictions. A product registers a ``RowSource`` once (from its ``AppConfig.ready``):
``rows(organisation)`` is the queryset of rows to infer (tenant-scoped, e.g. messages with no intent yet),
``text(row)`` the text of one, and ``sink(organisation, rows, predictions, version)`` writes one chunk's
results back (the product's own transaction and fields). ``app``/``task`` name the model: the active
version, unless the start names one.

``rows_infer_start`` counts the rows, takes that many predictions from the quota and queues the job in one
transaction (the batch's rule: two jobs cannot both pass on the last of the quota). The job walks the rows
that existed at its start (primary key up to the largest one then) in primary-key order, ``CHUNK`` at a
time, reporting progress after each chunk. Predictions the job did not make (rows deleted meanwhile, or the
rest of a failed or cancelled job, counted from its progress) are given back.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Max, QuerySet

from core.billing import services as billing
from core.billing.models import Meter, UsageEvent
from core.errors import InvalidInput
from core.jobs import services as jobs
from core.registry.batch import _batch_quota_message, _charge_key
from core.registry.paths import validate_id
from core.registry.services import classifier_version, predictor_for

log = logging.getLogger(__name__)

KIND = "ml.rows_infer"
CHUNK = 256


@dataclass(frozen=True)
class RowSource:
    name: str  # "<app>.<what>", unique
    app: str
    task: str
    rows: Callable[[Any], QuerySet]
    text: Callable[[Any], str]
    sink: Callable[[Any, Sequence[Any], Sequence[Any], Any], None]


_SOURCES: dict[str, RowSource] = {}


def register_row_source(source: RowSource) -> None:
    _SOURCES[source.name] = source


def row_source(name: object) -> RowSource:
    source = _SOURCES.get(name) if isinstance(name, str) else None
    if source is None:
        raise InvalidInput(f"Unknown row source '{name}'.", details={"field": "source"})
    return source


def _rows(source: RowSource, organisation) -> QuerySet:
    return source.rows(organisation).filter(organisation=organisation)  # fail closed on a wide queryset


def rows_infer_start(*, organisation, source: str, version_id: int | None = None, created_by=None):
    """Queue inference over the organisation's rows of ``source``; InvalidInput when there are none."""
    spec = row_source(source)
    version = classifier_version(
        organisation=organisation, version_id=version_id, app=spec.app, task=spec.task
    )
    shape = _rows(spec, organisation).aggregate(upto=Max("pk"))
    count = _rows(spec, organisation).count()
    if not count:
        raise InvalidInput("There are no rows to run the model over.")
    with _batch_quota_message(count):
        billing.quota_check(organisation=organisation, meter=Meter.PREDICTIONS, quantity=count)
    params = {"source": spec.name, "model_version": version.pk, "upto": shape["upto"], "rows": count}
    with transaction.atomic(), _batch_quota_message(count):
        job = jobs.job_create(
            organisation=organisation, kind=KIND, params=params, created_by=created_by, app=spec.app
        )
        billing.usage_record(
            organisation=organisation,
            meter=Meter.PREDICTIONS,
            quantity=count,
            idempotency_key=_charge_key(job),
            metadata={"job": job.pk, "model_version": version.pk, "source": spec.name},
        )
    return job


def rows_infer_handler(job, reporter) -> dict[str, Any]:
    params = job.params if isinstance(job.params, dict) else {}
    spec = row_source(params.get("source"))
    version = classifier_version(
        organisation=job.organisation, version_id=validate_id(params.get("model_version"), "model_version")
    )
    predictor = predictor_for(version=version)
    total = max(1, int(params.get("rows") or 1))
    rows = _rows(spec, job.organisation).filter(pk__lte=params.get("upto") or 0).order_by("pk")
    done, after = 0, None
    while True:
        chunk = list((rows if after is None else rows.filter(pk__gt=after))[:CHUNK])
        if not chunk:
            break
        predictions = predictor.predict([spec.text(row) for row in chunk])
        spec.sink(job.organisation, chunk, predictions, version)
        done, after = done + len(chunk), chunk[-1].pk
        # forced, once per chunk: the progress stored is what a failed job's release counts as done
        reporter.progress(min(done, total) / total, f"{done} of {total} rows", force=True)
    _give_back(job, max(0, int(params.get("rows") or 0) - done), "unused")
    return {"rows": done, "model_version": version.pk, "source": spec.name}


def rows_infer_release(job) -> None:
    """A job that ended without succeeding gives back the predictions it did not make (its progress
    counts the rows its sink wrote, whole chunks only)."""
    rows = int((job.params or {}).get("rows") or 0)
    _give_back(job, rows - int(round(job.progress * rows)), "refund")


def _give_back(job, quantity: int, why: str) -> None:
    charge = UsageEvent.objects.for_org(job.organisation).filter(idempotency_key=_charge_key(job)).first()
    quantity = min(quantity, charge.quantity if charge is not None else 0)
    if quantity <= 0:
        return
    billing.usage_record(
        organisation=job.organisation,
        meter=Meter.PREDICTIONS,
        quantity=-quantity,
        idempotency_key=f"rows-{why}:{job.pk}",
        enforce=False,
        metadata={"job": job.pk, "refund": True},
    )
