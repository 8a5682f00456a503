"""Training the recommender: a ``recommender.train`` job on the ``train`` queue, from the
organisation's events.

The events are read with the organisation's weights, split leave-last-out per user (``ranking``), fitted by
the kind (``recommender.kinds``), evaluated on the held-out items (NDCG@10, Recall@10, HR@10 stored with the
version), written completely into the model store and only then registered as a version; the registry's
promotion rule then activates it only if it beats the active version's NDCG@10 on the same held-out rows.
The hybrid ranker (``method: hybrid``) also reads the catalogue: every live item's text vector (items still
waiting for theirs are embedded first, ``services.text``) and its ``boost`` attribute (a number; others 0).
"""

import shutil
from typing import Any

import numpy as np
from django.db import transaction

from core import vectors
from core.billing import services as billing
from core.billing.models import Meter
from core.errors import InvalidInput
from core.jobs import services as jobs
from core.ml.datasets import fingerprint_rows
from core.registry.kinds import get_kind
from core.registry.models import ModelVersion, VersionStatus
from core.registry.paths import model_dir
from core.registry.services.common import encrypt_model_dir, next_version
from core.registry.services.promotion import model_promote_if_better
from recommender import hybrid, ranking
from recommender.kinds import APP, RECOMMENDER, TASK, encode_interaction, held_out_rows
from recommender.models import Item
from recommender.selectors import interactions
from recommender.services import text

TRAIN_JOB = "recommender.train"
MIN_EVENTS = 2


def recommender_train_start(*, organisation, config: dict[str, Any] | None = None, created_by=None):
    """Queue a training job (``config``: method popularity | itemknn | ease and its settings)."""
    config = get_kind(RECOMMENDER).check_settings(config=config, search=None, follow_up=None)
    billing.quota_check(organisation=organisation, meter=Meter.MODELS)
    return jobs.job_create(
        organisation=organisation,
        kind=TRAIN_JOB,
        # the task named: the product declares two (ranking, item_text) and the job page says which it trains
        params={"config": config, "task": TASK},
        created_by=created_by,
        app=APP,
    )


def train_job_handler(job, reporter) -> dict[str, Any]:
    kind = get_kind(RECOMMENDER)
    config = kind.check_settings(config=(job.params or {}).get("config"), search=None, follow_up=None)
    events = interactions(organisation=job.organisation)
    if len(events) < MIN_EVENTS:
        raise InvalidInput("There are not enough events to train on: send behaviour first.")
    reporter.progress(0.1, f"Read {len(events)} events", force=True)
    train, held_out = ranking.split_leave_last_out(events)
    kept = {id(e) for e in train}  # the split keeps the event tuples themselves
    rows: dict[str, Any] = {
        "train": [encode_interaction(e) for e in train],
        "held_out_events": [encode_interaction(e) for e in events if id(e) not in kept],
        "validation": [],
        "test": held_out_rows(held_out),
    }
    if config.get("method") == "hybrid":
        embedded = text.items_embed_pending(organisation=job.organisation)
        reporter.progress(0.2, f"Embedded {embedded} new or changed items", force=True)
        rows["catalogue"] = catalogue_for_training(organisation=job.organisation)
    trained = kind.train(
        job=job, rows=rows, config=config, search=None, runtime=None, progress=None, reporter=reporter
    )
    version = _store(
        job=job, trained=trained, fingerprint=fingerprint_rows(rows["train"] + rows["held_out_events"])
    )
    promoted, reason = model_promote_if_better(
        organisation=job.organisation, version_id=version.pk, held_out=trained.held_out
    )
    return {
        "model_version": version.pk,
        "version": version.version,
        "promoted": promoted,
        "promotion": reason,
        **trained.summary,
    }


def _boost(attributes) -> float:
    value = attributes.get("boost") if isinstance(attributes, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def catalogue_for_training(*, organisation) -> hybrid.Catalogue:
    """Every live item with a vector of the current model: ids, texts, vectors and boosts."""
    model = vectors.current_model(organisation=organisation, app=text.APP, task=text.TEXT_TASK)
    rows = (
        Item.objects.for_org(organisation)
        .filter(deleted=False, embedder=model, vector__isnull=False)
        .order_by("external_id")
        .values_list("external_id", "title", "vector", "attributes")
    )
    items, texts, vecs, boosts = [], [], [], {}
    for key, title, vector, attributes in rows.iterator(chunk_size=2000):
        items.append(key)
        texts.append(title)
        vecs.append(np.frombuffer(bytes(vector or b""), dtype=np.float32))
        if _boost(attributes):
            boosts[key] = _boost(attributes)
    matrix = np.stack(vecs) if vecs else np.zeros((0, 1), dtype=np.float32)
    return hybrid.Catalogue(items=items, vectors=matrix, texts=texts, boosts=boosts)


def _store(*, job, trained, fingerprint: str) -> ModelVersion:
    """The artifact completely into the store, then the (ready) version row pointing at it."""
    org, kind = job.organisation, get_kind(RECOMMENDER)
    with transaction.atomic():
        number = next_version(
            ModelVersion.objects.for_org(org).filter(app=APP, task=TASK).select_for_update()
        )
        directory = model_dir(organisation_id=org.pk, app=APP, task=TASK, version=number)
        if directory.exists():  # left by a version row that never committed
            shutil.rmtree(directory)
        manifest = kind.save(
            model=trained.model,
            directory=directory,
            extra_manifest={
                "product_task": TASK,
                "app": APP,
                "version": number,
                "metrics": trained.metrics,
                "data_fingerprint": fingerprint,
                "device": "cpu",
            },
        )
        encrypt_model_dir(directory, org.pk)
        return ModelVersion.all_tenants.create(
            organisation=org,
            app=APP,
            task=TASK,
            version=number,
            kind=RECOMMENDER,
            status=VersionStatus.READY,
            method=trained.method,
            metrics=trained.metrics,
            manifest=manifest,
            artifact_path=str(directory),
            labels=[],
            data_fingerprint=fingerprint,
            training_job=job,
        )
