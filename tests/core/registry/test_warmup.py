"""Active models are loaded before the first request: at promotion, at process start, and when another
process promoted them. Measured by this process's cache state (what is loaded), never by time."""

import csv
import gc
import io
from pathlib import Path

import pytest

from core.jobs import services as jobs
from core.jobs.models import JobStatus, TrainingJob
from core.registry import services as registry
from core.registry.models import ModelVersion
from core.registry.services import embedding, serving, warmup
from core.registry.services.common import artifact_key
from tests.worker import wait_for

DATA = Path(__file__).resolve().parents[3] / "data" / "banking77"


def _train(organisation, task: str) -> ModelVersion:
    """The fast model (a head on frozen MiniLM) on the BANKING77 slice, run in this process."""
    with (DATA / "train_slice.csv").open() as handle:
        rows = [(r["text"], r["category"]) for r in csv.DictReader(handle)]
    out = io.StringIO()
    csv.writer(out).writerows([("text", "label"), *rows])
    dataset = registry.dataset_upload(
        organisation=organisation,
        name=task,
        task="classification",
        data=out.getvalue().encode(),
        filename="d.csv",
    )
    job = registry.model_train_start(
        organisation=organisation, dataset_id=dataset.pk, app="customer_service", task=task, config=None
    )
    jobs.job_execute(job_id=job.pk)
    job = TrainingJob.objects.for_org(organisation).get(pk=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return ModelVersion.objects.for_org(organisation).get(pk=job.result["model_version"])


def _forget(*versions: ModelVersion) -> None:
    """This process forgets loaded models, as a new process has none."""
    for version in versions:
        serving.model_cache().evict(artifact_key(version))
        assert not warmup.version_is_warm(version=version)


@pytest.fixture
def warm(settings):
    settings.ML_WARMUP = True
    yield
    warmup.warmup_stop(timeout=60)
    assert warmup.warmups_wait(timeout=120)


@pytest.mark.django_db(transaction=True)
def test_a_promoted_version_is_loaded_before_its_first_request(warm, make_org):
    organisation, _owner = make_org()
    first = _train(organisation, "intent")  # the first version: activated by the job
    assert warmup.warmups_wait(timeout=120)
    assert warmup.version_is_warm(version=first)

    second = _train(organisation, "intent")  # not better on the same rows: kept, not active
    second.refresh_from_db()
    assert second.status == "ready"
    _forget(first, second)
    registry.model_promote(organisation=organisation, version_id=second.pk, force=True)
    assert warmup.warmups_wait(timeout=120)
    assert warmup.version_is_warm(version=second) and not warmup.version_is_warm(version=first)

    registry.model_rollback(organisation=organisation, app="customer_service", task="intent")
    assert warmup.warmups_wait(timeout=120)
    assert warmup.version_is_warm(version=first)


@pytest.mark.django_db(transaction=True)
def test_a_starting_process_loads_the_active_versions_then_those_promoted_elsewhere(warm, settings, make_org):
    one, _ = make_org()
    other, _ = make_org()
    intent = _train(one, "intent")
    topic = _train(other, "topic")
    assert warmup.warmups_wait(timeout=120)
    _forget(intent, topic)

    # a process starts: its warm-up thread loads the active versions of every organisation (bounded)
    settings.ML_WARMUP_VERSIONS, settings.ML_WARMUP_INTERVAL_S = 1, 0.2
    gc.unfreeze()
    try:
        warmup.warmup_at_start()
        assert warmup.warmups_wait(timeout=120)
        assert gc.get_freeze_count() > 0  # what it loaded joined start-up's objects, out of full collections
    finally:
        gc.unfreeze()  # the rest of the suite runs with an ordinary collector
    assert warmup.version_is_warm(version=topic) and not warmup.version_is_warm(version=intent)  # the newest
    assert embedding.base_embedder_is_loaded()  # the base encoder for knowledge-base search too

    # another process (a train worker) promotes a version: this one loads it on its next look
    settings.ML_WARMUP = False  # as if promoted elsewhere: no warm-up in this process on commit
    challenger = _train(one, "intent")
    _forget(challenger)
    registry.model_promote(organisation=one, version_id=challenger.pk, force=True)
    wait_for(lambda: warmup.version_is_warm(version=challenger), timeout=120)


def test_warm_up_is_off_in_the_tests_and_in_the_processes_they_start():
    import os

    from django.conf import settings

    assert settings.ML_WARMUP is False and os.environ["ML_WARMUP"] == "0"
    assert warmup.warmup_at_start() is None
