"""The default topic and sentiment models of a new organisation, trained from the shipped licence-clean sets.

``finance_monitor/data/twitter_financial_news/`` ships the de-duplicated training splits of the twitter
financial news sentiment and topic sets (MIT; ``ATTRIBUTION.md``). :func:`monitor_defaults_install` stores
each as a dataset of the organisation (``dataset_from_rows``: validated, split, fingerprinted; it is the base
that retraining with analysts' corrections builds on) and queues one training job per task with the
platform's fast default (a head on the frozen encoder blended with TF-IDF): a model within a minute or two.
When ``FM_DEFAULT_FINE_TUNE`` is on (off by default: for GPU workers), each fast job then queues the
fine-tuned default (``FINE_TUNED_CONFIG``: the encoder fine-tuned, blended with TF-IDF, its confidence
calibrated) on the same dataset, as the same unmetered job kind; the promotion rule lets it replace the fast
model only if it beats it
on the held-out rows (BENCHMARKS.md section 18: its accuracy and PhraseBank calibration, and its CPU time).

The jobs are the platform's training (the same handler as ``ml.train``) under the product's own job kind
``finance_monitor.train_default``, registered with ``metered=False``: they are not counted against the
organisation's training-job quota (core charges that meter only for kinds registered as metered, in
``core.jobs.services.job_create``). The datasets are the product's shipped rows (``Dataset.shipped``): they
are neither counted in nor refused by the organisation's stored records, and the versions trained on them
are not counted in its models (the registry's counters leave them out), so a trial keeps its records and
model slots for its own. ``FM_DEFAULT_TRAIN_ROWS`` caps the rows per task (4,000 each by default, a
stratified sample, to keep the fast training short; 0 trains on every shipped row).

When: the first time a document waits for classification with no active model (``classification``), when
``FM_DEFAULT_MODELS_ON_FIRST_USE`` is on (the default), or on request (``POST
/api/finance-monitor/models/defaults``). A successful job queues classification of the pending documents.
"""

import csv
import gzip
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from django.conf import settings

from core.errors import Conflict, TrellisError
from core.jobs import services as jobs
from core.jobs.models import ACTIVE_STATUSES, TrainingJob
from core.registry import services as registry
from core.registry.services.classifier import classifier_settings_check
from core.registry.services.common import active_version
from finance_monitor.services.classification import APP, SENTIMENT_TASK, TOPIC_TASK, classify_enqueue

DATA = Path(__file__).resolve().parents[1] / "data" / "twitter_financial_news"
FILES = {TOPIC_TASK: "topic_train.csv.gz", SENTIMENT_TASK: "sentiment_train.csv.gz"}
JOB_KIND = "finance_monitor.train_default"
SEED = 13
# The fine-tuned default (issue 11, BENCHMARKS.md section 18): every weight of the encoder trained for two
# epochs, early-stopped on validation accuracy (the measure the targets name, so plain cross-entropy rather
# than class weights), label smoothing, the TF-IDF blend, and a temperature fitted on the held-out rows. The
# time budget keeps a busy CPU worker's train queue moving (the best state so far is kept).
FINE_TUNED_CONFIG: dict[str, Any] = {
    "method": "full",
    "epochs": 2,
    "learning_rate": 1e-4,
    "metric": "accuracy",
    "class_weights": False,
    "label_smoothing": 0.1,
    "lexical": True,
    "calibrate": True,
    "time_budget_s": 1800,
}


def default_rows(*, task: str, cap: int | None = None) -> list[tuple[str, str]]:
    """The shipped training rows of ``task`` (``(text, label)``, the text as shipped: training reads it in the
    task's text form, ``finance_monitor.links.LINKS_AS_WORD``), at most ``cap`` (0/None: all), sampled per
    label in proportion (every label keeps at least one row) with a fixed seed."""
    with gzip.open(DATA / FILES[task], "rt", encoding="utf-8", newline="") as handle:
        rows = [(r["text"], r["label"]) for r in csv.DictReader(handle)]
    if not cap or cap >= len(rows):
        return rows
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    rng = random.Random(SEED)
    kept: list[tuple[str, str]] = []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        kept.extend(group[: max(1, round(cap * len(group) / len(rows)))])
    rng.shuffle(kept)
    return kept


def _default_jobs(organisation):
    return TrainingJob.objects.for_org(organisation).filter(kind=JOB_KIND)


def monitor_defaults_install(*, organisation, created_by=None) -> list[TrainingJob]:
    """Queue training of the default model of every task that has no active model (and no default training
    under way); the jobs. Conflict when there is nothing to train."""
    started = []
    for task in (TOPIC_TASK, SENTIMENT_TASK):
        if active_version(organisation, APP, task) is not None:
            continue
        if _default_jobs(organisation).filter(params__task=task, status__in=ACTIVE_STATUSES).exists():
            continue
        started.append(task)
    if not started:
        raise Conflict("The topic and sentiment models are active or their default training is under way.")
    config = classifier_settings_check(config=None)
    queued = []
    for task in started:
        dataset = registry.dataset_from_rows(
            organisation=organisation,
            name=f"Finance monitor {task} (default)",
            task="classification",
            rows=default_rows(task=task, cap=settings.FM_DEFAULT_TRAIN_ROWS),
            source=f"finance_monitor/data/twitter_financial_news/{FILES[task]} (MIT)",
            shipped=True,  # the monitor's own rows: not the organisation's stored records
        )
        params: dict[str, Any] = {
            "dataset_id": dataset.pk,
            "app": APP,
            "task": task,
            "config": config,
            "search": None,
            "follow_up": None,
            "fine_tune": dict(FINE_TUNED_CONFIG) if settings.FM_DEFAULT_FINE_TUNE else None,
        }
        queued.append(
            jobs.job_create(
                organisation=organisation, kind=JOB_KIND, params=params, created_by=created_by, app=APP
            )
        )
    return queued


def monitor_defaults_install_once(*, organisation) -> list[TrainingJob]:
    """The automatic install: only if the organisation never had default training (a failed one is not
    retried by itself; the API's install is)."""
    if _default_jobs(organisation).exists():
        return []
    try:
        return monitor_defaults_install(organisation=organisation)
    except Conflict:
        return []


def default_train_job_handler(job, reporter) -> dict[str, Any]:
    """The platform's training handler; a promoted default then classifies what waited for it, and a fast
    default queues its fine-tune (``fine_tune`` in the job's params)."""
    result = registry.train_job_handler(job, reporter)
    if result.get("promoted"):
        classify_enqueue(organisation_id=job.organisation_id)
    if job.params.get("fine_tune"):
        result["fine_tune"] = _fine_tune_start(job)
    return result


def _fine_tune_start(job) -> dict[str, Any]:
    """Queue the fine-tuned default on the fast job's dataset (same kind: not counted as a training job, and
    its version, on shipped rows, not counted in the plan's models); a refusal (a bad config) is reported in
    the fast job's result, which stays succeeded."""
    try:
        config = classifier_settings_check(config=dict(job.params["fine_tune"]))
        params = {**job.params, "config": config, "fine_tune": None}
        follow = jobs.job_create(
            organisation=job.organisation, kind=JOB_KIND, params=params, created_by=job.created_by, app=APP
        )
    except TrellisError as exc:
        return {"error": exc.message}
    return {"job": follow.pk}
