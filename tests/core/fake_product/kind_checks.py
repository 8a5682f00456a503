"""Run by tests/core/registry/test_model_kinds.py in a subprocess, under ``tests.core.fake_product.settings``
(the file name keeps it out of the normal collection): the test-only product's own model kind (TF-IDF,
``kinds.py``) trains, is stored with its kind, promoted by its own score, served, batch-run, warmed and rolled
back through the registry, though no core module names it."""

import csv
import io

import pytest
from django.core.exceptions import ImproperlyConfigured

from core.errors import Conflict
from core.jobs import services as jobs
from core.jobs.models import TrainingJob
from core.registry import services as registry
from core.registry.batch import batch_predict_start
from core.registry.kinds import kind_names
from core.registry.models import ModelVersion
from core.registry.services import warmup
from tests.core.fake_product.apps import activations

ROWS = [
    (f"{word} please {n}", label)
    for n in range(12)
    for word, label in (
        ("refund", "money"),
        ("cash back", "money"),
        ("deliver", "shipping"),
        ("parcel", "shipping"),
    )
]


def _train(org, config=None) -> ModelVersion:
    out = io.StringIO()
    csv.writer(out).writerows([("text", "label"), *ROWS])
    dataset = registry.dataset_upload(
        organisation=org, name="kw", task="classification", data=out.getvalue().encode(), filename="k.csv"
    )
    job = registry.model_train_start(
        organisation=org, dataset_id=dataset.pk, app="fake_product", task="keywords", config=config
    )
    assert job.params["config"] == (config or {"c": 10.0})  # the kind's own settings and default
    jobs.job_execute(job_id=job.pk)
    job = TrainingJob.objects.for_org(org).get(pk=job.pk)
    assert job.status == "succeeded", job.error
    assert set(job.result) == {"model_version", "version", "accuracy", "promoted", "promotion"}
    return ModelVersion.objects.for_org(org).get(pk=job.result["model_version"])


@pytest.mark.django_db(transaction=True)
def test_a_product_kind_trains_promotes_serves_and_rolls_back(make_org):
    org, _owner = make_org()
    assert "tfidf" in kind_names()
    first = _train(org)
    assert (first.kind, first.status, first.method) == ("tfidf", "active", "tfidf")
    assert first.promotion_note == "first version: activated"
    assert activations == [first.pk]  # the product's on_activate, once the promotion committed
    answer = registry.model_predict(organisation=org, app="fake_product", task="keywords", texts=["a refund"])
    assert answer["predictions"][0]["label"] == "money"
    with pytest.raises(Conflict, match="TF-IDF model"):
        registry.model_embed(organisation=org, version_id=first.pk, texts=["x"])

    second = _train(org, {"c": 1.0})  # the same held-out rows, scored by the kind: not better, kept
    second.refresh_from_db()
    assert second.status == "ready" and "accuracy on the same held-out rows" in second.promotion_note
    assert activations == [first.pk]  # kept: nothing activated
    registry.model_promote(organisation=org, version_id=second.pk, force=True)
    assert activations == [first.pk, second.pk]
    warmup.version_warm(version=second)
    assert warmup.version_is_warm(version=second)
    back = registry.model_rollback(organisation=org, app="fake_product", task="keywords")
    assert back.pk == first.pk and activations == [first.pk, second.pk, first.pk]

    batch = batch_predict_start(
        organisation=org, data=b"text\nmy parcel\n", filename="b.csv", version_id=first.pk
    )
    jobs.job_execute(job_id=batch.pk)
    batch = TrainingJob.objects.for_org(org).get(pk=batch.pk)
    assert batch.status == "succeeded" and batch.result["rows"] == 1


def test_a_product_declaring_an_unknown_kind_is_refused():
    from core.products import ModelTask, Product, register_product

    with pytest.raises(ImproperlyConfigured, match="unknown kind"):
        register_product(
            Product(
                name="fake_product",
                display_name="x",
                url_prefix="fake-other",
                model_tasks=(ModelTask("two_tower", kind="two_tower"),),
            )
        )
