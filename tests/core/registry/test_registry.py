"""Datasets, training jobs on a real worker, the registry's promotion rule, rollback and serving."""

import csv
import io
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.billing.models import UsageEvent
from core.jobs import services as jobs
from core.jobs.models import JobStatus, TrainingJob
from core.registry import services
from core.registry.models import ModelVersion, VersionStatus
from tests.worker import celery_worker, wait_for

DATA = Path(__file__).resolve().parents[3] / "data" / "banking77"


def _csv(rows, header=("text", "label")) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


def _slice(name: str) -> list[tuple[str, str]]:
    with (DATA / name).open() as handle:
        return [(r["text"], r["category"]) for r in csv.DictReader(handle)]


def _upload(client, data: bytes, name="intents", filename="intents.csv"):
    return client.post(
        "/api/datasets/",
        {"name": name, "task": "classification", "file": SimpleUploadedFile(filename, data)},
        format="multipart",
    )


@pytest.mark.django_db
def test_dataset_upload_report_and_versions(make_org, user_client):
    org, owner = make_org()
    client = user_client(owner)
    rows = _slice("train_slice.csv") + [
        ("mail me at ann@example.com about my card", "card_arrival"),
        ("", "x"),
    ]
    created = _upload(client, _csv(rows))
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["version"] == 1 and body["rejected_count"] == 1 and len(body["labels"]) == 8
    assert body["split_counts"]["scrubbed"] == 1
    assert sum(body["split_counts"][k] for k in ("train", "validation", "test")) == body["row_count"]
    report = b"".join(client.get(f"/api/datasets/{body['id']}/report/").streaming_content).decode()
    assert "empty_text" in report and "email" in report
    assert _upload(client, _csv(rows)).json()["version"] == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (_csv([("a", "x"), ("b", "x"), ("c", "x")]), "at least 2 labels"),
        (_csv([("a", "x", "1")], header=("text", "label", "extra")), "extra"),
        (_csv([("a",)], header=("text",)), "missing required column"),
        (b"\xff\xfe\x00\x00garbage", ""),
    ],
)
def test_bad_uploads_are_refused_and_store_nothing(make_org, user_client, data, message):
    org, owner = make_org()
    response = _upload(user_client(owner), data)
    assert response.status_code == 400, response.content
    assert message.lower() in response.json()["error"]["message"].lower()
    from core.registry.models import Dataset

    assert Dataset.objects.for_org(org).count() == 0


@pytest.mark.django_db
def test_training_settings_are_validated_before_queueing(make_org, user_client):
    org, owner = make_org()
    client = user_client(owner)
    dataset = _upload(client, _csv(_slice("train_slice.csv"))).json()
    bad = client.post(
        "/api/models/train/",
        {
            "dataset": dataset["id"],
            "app": "customer_service",
            "task": "intent",
            "config": {"method": "magic"},
        },
        format="json",
    )
    assert bad.status_code == 400 and "method must be one of" in bad.json()["error"]["message"]
    bad = client.post(
        "/api/models/train/",
        {"dataset": dataset["id"], "app": "customer_service", "task": "intent", "config": {"epochz": 3}},
        format="json",
    )
    assert bad.status_code == 400 and "epochz" in bad.json()["error"]["message"]
    bad = client.post(
        "/api/models/train/",
        {
            "dataset": dataset["id"],
            "app": "customer_service",
            "task": "intent",
            "config": {"method": "full", "metric": "recall", "class_weights": False},
        },
        format="json",
    )
    assert bad.status_code == 400 and "metric must be one of" in bad.json()["error"]["message"]
    assert TrainingJob.objects.for_org(org).count() == 0
    # Training for accuracy (BENCHMARKS.md, PhraseBank) is a setting a tenant can choose.
    good = client.post(
        "/api/models/train/",
        {
            "dataset": dataset["id"],
            "app": "customer_service",
            "task": "intent",
            "config": {"method": "full", "metric": "accuracy", "class_weights": False, "label_smoothing": 0},
        },
        format="json",
    )
    assert good.status_code == 201, good.content
    assert TrainingJob.objects.for_org(org).get().params["config"]["metric"] == "accuracy"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_train_promote_predict_rollback_on_a_real_worker(make_org, make_key, key_client, user_client):
    org, owner = make_org()
    other, other_owner = make_org()
    client = user_client(owner)
    train, test = _slice("train_slice.csv"), _slice("test_slice.csv")
    good = _upload(client, _csv(train + test)).json()
    labels = sorted({label for _, label in train})
    shuffled = [
        (text, labels[(labels.index(label) + i) % len(labels)])
        for i, (text, label) in enumerate(train + test)
    ]
    bad = _upload(client, _csv(shuffled), name="noisy").json()
    body = {"app": "customer_service", "task": "intent", "config": {"method": "head"}}
    with celery_worker() as proc:
        job1 = client.post("/api/models/train/", {"dataset": good["id"], **body}, format="json").json()
        wait_for(
            lambda: TrainingJob.objects.for_org(org).get(pk=job1["id"]).status in ("succeeded", "failed"),
            timeout=240,
            proc=proc,
        )
        done = TrainingJob.objects.for_org(org).get(pk=job1["id"])
        assert done.status == JobStatus.SUCCEEDED, done.error
        assert done.result["promoted"] and done.result["accuracy"] >= 0.8 and done.device == "cpu"
        job2 = client.post("/api/models/train/", {"dataset": bad["id"], **body}, format="json").json()
        wait_for(
            lambda: TrainingJob.objects.for_org(org).get(pk=job2["id"]).status in ("succeeded", "failed"),
            timeout=240,
            proc=proc,
        )
    v1 = ModelVersion.objects.for_org(org).get(version=1)
    v2 = ModelVersion.objects.for_org(org).get(version=2)
    assert (
        v1.status == VersionStatus.ACTIVE
        and v2.status == VersionStatus.READY
        and "kept v1" in v2.promotion_note
    )
    assert Path(v1.artifact_path, "manifest.json").exists()
    assert v1.manifest["base_model"]["sha256"] and v1.manifest["data_fingerprint"] == good["fingerprint"]
    assert {"accuracy", "macro_f1", "per_class", "confusion", "ece"} <= set(v1.metrics)
    assert "use_quantized" in v1.quantization

    _, secret = make_key(org, scopes=["predict", "read"])
    api = key_client(secret)
    result = api.post(
        f"/api/models/{v1.pk}/predict", {"texts": ["My card has not arrived yet", "hi"]}, format="json"
    )
    assert result.status_code == 200, result.content
    first = result.json()["predictions"][0]
    assert first["label"] == "card_arrival" and abs(sum(first["probabilities"].values()) - 1) < 1e-4
    assert result.json()["version"] == 1
    assert UsageEvent.objects.for_org(org).filter(meter="predictions").get().quantity == 2

    # Another tenant cannot see or use the model.
    assert (
        user_client(other_owner)
        .post(f"/api/models/{v1.pk}/predict", {"texts": ["x"]}, format="json")
        .status_code
        == 404
    )
    # Forced promotion, then rollback in one action.
    assert client.post(f"/api/models/{v2.pk}/promote/", {}, format="json").status_code == 400
    assert (
        client.post(f"/api/models/{v2.pk}/promote/", {"force": True}, format="json").json()["status"]
        == "active"
    )
    back = client.post("/api/models/rollback/", {"app": "customer_service", "task": "intent"}, format="json")
    assert back.json()["id"] == v1.pk and back.json()["status"] == "active"
    # Archived versions refuse to serve.
    client.post(f"/api/models/{v2.pk}/archive/", {}, format="json")
    refused = api.post(f"/api/models/{v2.pk}/predict", {"texts": ["x"]}, format="json")
    assert refused.status_code == 409 and "archived" in refused.json()["error"]["message"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_killed_worker_leaves_failed_job_and_active_version_untouched(make_org, user_client):
    org, owner = make_org()
    client = user_client(owner)
    rows = _slice("train_slice.csv") + _slice("test_slice.csv")
    dataset = _upload(client, _csv(rows)).json()
    active = ModelVersion.all_tenants.create(
        organisation=org,
        app="customer_service",
        task="intent",
        version=1,
        status=VersionStatus.ACTIVE,
        method="head",
        artifact_path="/nonexistent",
        labels=["a"],
    )
    config = {"method": "full", "epochs": 50, "batch_size": 4, "patience": 0}
    with celery_worker() as proc:
        job = client.post(
            "/api/models/train/",
            {"dataset": dataset["id"], "app": "customer_service", "task": "intent", "config": config},
            format="json",
        ).json()
        wait_for(
            lambda: TrainingJob.objects.for_org(org).get(pk=job["id"]).progress > 0.01, timeout=240, proc=proc
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    job_row = TrainingJob.objects.for_org(org).get(pk=job["id"])
    assert job_row.status == JobStatus.RUNNING  # nobody is left to report
    assert jobs.job_reap_stale(timeout=timedelta(seconds=0)) == 1
    job_row.refresh_from_db()
    assert job_row.status == JobStatus.FAILED and "killed or crashed" in job_row.error
    active.refresh_from_db()
    assert active.status == VersionStatus.ACTIVE
    assert list(ModelVersion.objects.for_org(org).values_list("version", flat=True)) == [1]


@pytest.mark.django_db
def test_default_is_the_fast_model_and_follow_up_queues_the_fine_tune(make_org, user_client):
    org, owner = make_org()
    client = user_client(owner)
    dataset = _upload(client, _csv(_slice("train_slice.csv") + _slice("test_slice.csv"))).json()
    created = client.post(
        "/api/models/train/",
        {
            "dataset": dataset["id"],
            "app": "customer_service",
            "task": "intent",
            "follow_up": {"method": "lora"},
        },
        format="json",
    ).json()
    assert created["params"]["config"] == {"method": "head", "lexical": True}
    jobs.job_execute(job_id=created["id"])
    first = TrainingJob.objects.for_org(org).get(pk=created["id"])
    assert first.status == JobStatus.SUCCEEDED, first.error
    follow = TrainingJob.objects.for_org(org).get(pk=first.result["follow_up"]["job"])
    assert follow.status == JobStatus.QUEUED and follow.params["config"] == {"method": "lora"}
    assert follow.params["follow_up"] is None
    page = client.get(f"/jobs/{first.pk}/")
    assert f"job #{follow.pk}".encode() in page.content


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("search", "message"),
    [
        ({"n_trials": 0}, "n_trials must be 1 to 50"),
        ({"n_trials": 2, "time_budget_s": -1}, "positive"),
        ({"trials": 2}, "Unknown search settings: trials"),
    ],
)
def test_bad_search_settings_are_refused(make_org, user_client, search, message):
    org, owner = make_org()
    client = user_client(owner)
    dataset = _upload(client, _csv(_slice("train_slice.csv"))).json()
    response = client.post(
        "/api/models/train/",
        {"dataset": dataset["id"], "app": "customer_service", "task": "intent", "search": search},
        format="json",
    )
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert TrainingJob.objects.for_org(org).count() == 0


@pytest.mark.django_db
def test_search_job_lists_every_trial_and_keeps_the_best(make_org, user_client):
    org, owner = make_org()
    client = user_client(owner)
    dataset = _upload(client, _csv(_slice("train_slice.csv") + _slice("test_slice.csv"))).json()
    job = services.model_train_start(
        organisation=org,
        dataset_id=dataset["id"],
        app="customer_service",
        task="intent",
        config={"method": "lora", "max_length": 32},
        search={"n_trials": 2},
    )
    jobs.job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    trials = job.result["trials"]
    assert [t["number"] for t in trials] == [0, 1] and all(t["state"] == "COMPLETE" for t in trials)
    best = max(trials, key=lambda t: t["value"])
    assert job.result["best_config"]["learning_rate"] == pytest.approx(best["params"]["learning_rate"])
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="trials"' in page and page.count("<td>COMPLETE</td>") == 2


def test_store_sweep_clears_a_killed_save(settings, tmp_path):
    import os
    import time

    from core.registry.services import store_sweep

    settings.MODEL_STORE = tmp_path
    left = tmp_path / "3" / "finance_monitor" / "sentiment" / ".v4.tmp-x1"
    left.mkdir(parents=True)
    (left / "manifest.json").write_text("{}")
    old = time.time() - 8 * 3600
    os.utime(left / "manifest.json", (old, old))
    os.utime(left, (old, old))
    assert store_sweep() == [str(left)]
    assert not left.exists()


def test_cached_models_are_told_apart_by_their_files_not_only_their_ids():
    """SQLite gives a rolled-back or deleted row's id out again, and artifact folders are named after ids:
    a new model under an old model's id must not be served from the old model's cache entry."""
    from core.registry.services.common import artifact_key

    old = ModelVersion(pk=5, organisation_id=1, manifest={"files": {"model.safetensors": "aa"}})
    new = ModelVersion(pk=5, organisation_id=1, manifest={"files": {"model.safetensors": "bb"}})
    same = ModelVersion(pk=5, organisation_id=1, manifest={"files": {"model.safetensors": "aa"}})
    assert artifact_key(old) != artifact_key(new) and artifact_key(old) == artifact_key(same)
