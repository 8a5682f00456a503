"""Tenant isolation for datasets, models, predictions and job downloads: A never reaches B's rows."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.jobs import services as jobs
from core.jobs.models import TrainingJob
from core.registry.models import Dataset, ModelVersion
from tests.core.registry.trained import train_intent_model

DATA = Path(__file__).resolve().parents[3] / "data" / "banking77"
ALL_SCOPES = ["read", "predict", "train", "admin"]


@pytest.fixture
def world(make_org, make_key, tmp_path):
    """Org B with a dataset, an active model and a finished export job; org A with a key and nothing else."""
    a, a_owner = make_org("Alpha")
    b, b_owner = make_org("Bravo")
    train_intent_model(b, tmp_path)
    export = jobs.job_create(organisation=b, kind="usage.export")
    jobs.job_execute(job_id=export.pk)
    _, a_secret = make_key(a, scopes=ALL_SCOPES)
    version = ModelVersion.objects.for_org(b).get()
    return {
        "a": a,
        "a_owner": a_owner,
        "a_secret": a_secret,
        "b": b,
        "b_owner": b_owner,
        "version": version,
        "dataset": Dataset.objects.for_org(b).get(),
        "export": TrainingJob.objects.for_org(b).get(pk=export.pk),
    }


def _api_requests(w):
    v, d, j = w["version"].pk, w["dataset"].pk, w["export"].pk
    return [
        ("get", f"/api/datasets/{d}/", None),
        ("get", f"/api/datasets/{d}/report/", None),
        ("get", f"/api/models/{v}/", None),
        ("post", f"/api/models/{v}/predict", {"texts": ["where is my card"]}),
        ("post", f"/api/models/{v}/promote/", {"force": True}),
        ("post", f"/api/models/{v}/archive/", {}),
        ("post", "/api/models/train/", {"dataset": d, "app": "customer_service", "task": "intent"}),
        ("get", f"/api/jobs/{j}/download/", None),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ["session", "key"])
def test_api_refuses_other_tenants_models_datasets_and_files(world, caller, user_client, key_client):
    client = user_client(world["a_owner"]) if caller == "session" else key_client(world["a_secret"])
    for method, url, body in _api_requests(world):
        response = getattr(client, method)(url, body, format="json") if body is not None else client.get(url)
        assert response.status_code == 404, (url, response.status_code)
    for url in ("/api/datasets/", "/api/models/"):
        assert client.get(url).json()["results"] == [], url
    version = ModelVersion.objects.for_org(world["b"]).get()
    assert version.status == "active" and version.updated_at == world["version"].updated_at
    assert TrainingJob.objects.for_org(world["b"]).count() == 2
    # Positive control: B's owner reaches every one of them.
    owner = user_client(world["b_owner"])
    for _method, url, _body in _api_requests(world)[:4]:
        response = owner.get(url) if _method == "get" else owner.post(url, _body, format="json")
        assert response.status_code == 200, url


@pytest.mark.django_db
def test_batch_predictions_with_other_tenants_model_are_refused(world, user_client):
    upload = {"file": SimpleUploadedFile("a.txt", b"hello\n"), "model": world["version"].pk}
    response = user_client(world["a_owner"]).post("/api/batch-predictions/", upload, format="multipart")
    assert response.status_code == 404


@pytest.mark.django_db
def test_pages_refuse_other_tenants_models_datasets_and_files(world, client):
    v, d, j = world["version"].pk, world["dataset"].pk, world["export"].pk
    client.force_login(world["a_owner"])
    for url in (f"/models/{v}/", f"/datasets/{d}/report/", f"/jobs/{j}/download/"):
        assert client.get(url).status_code == 404, url
    for url, data in ((f"/models/{v}/action/", {"action": "archive"}), (f"/datasets/{d}/train/", {})):
        assert client.post(url, data).status_code == 404, url
    for url in ("/models/", "/datasets/"):
        html = client.get(url).content.decode()
        assert "faq" not in html and f"/models/{v}/" not in html, url
    assert ModelVersion.objects.for_org(world["b"]).get().status == "active"
    assert TrainingJob.objects.for_org(world["b"]).count() == 2
    client.force_login(world["b_owner"])
    for url in (f"/models/{v}/", f"/datasets/{d}/report/", f"/jobs/{j}/download/"):
        assert client.get(url).status_code == 200, url


def _files(org_id: int) -> dict[str, str]:
    """Every file of an organisation in the model store, the dataset store and the exports, with its hash."""
    import hashlib

    from django.conf import settings

    found = {}
    for root in (
        Path(settings.MODEL_STORE),
        Path(settings.DATASET_STORE),
        Path(settings.VAR_DIR) / "exports",
    ):
        for path in sorted((root / str(org_id)).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ["session", "key"])
def test_path_traversal_is_refused_at_every_endpoint_and_job_kind(world, caller, user_client, key_client):
    """A names B's folders in every field that could become part of a path; B's files stay as they were."""
    from core.jobs.handlers import job_kinds

    b = world["b"].pk
    before = _files(b)
    client = user_client(world["a_owner"]) if caller == "session" else key_client(world["a_secret"])
    upload = {
        "name": f"../../{b}/x",
        "task": "classification",
        "file": SimpleUploadedFile("../x.csv", _csv()),
    }
    created = client.post("/api/datasets/", upload, format="multipart")
    assert created.status_code == 201  # the name is a label, never a path: stored under A's own id
    mine = created.json()["id"]
    for app, task in [
        (f"../{b}/customer_service", "intent"),
        ("customer_service", f"../../{b}/x"),
        ("/", "x"),
    ]:
        body = {"dataset": mine, "app": app, "task": task}
        assert client.post("/api/models/train/", body, format="json").status_code == 400, (app, task)
    traversal = {
        "dataset_id": mine,
        "app": f"../{b}/customer_service",
        "task": "intent",
        "model_version": world["version"].pk,
        "input": f"../../{b}/batch/x.json",
        "period": f"../{b}",
    }
    for kind in job_kinds():  # no job kind can be started with client-chosen parameters
        assert (
            client.post("/api/jobs/", {"kind": kind, "params": traversal}, format="json").status_code == 405
        )
    assert client.post("/api/usage/exports/", {"period": f"../{b}"}, format="json").status_code == 400
    rollback = client.post("/api/models/rollback/", {"app": "../x", "task": "intent"}, format="json")
    assert rollback.status_code in (404, 409)  # app and task only filter rows: nothing to roll back
    assert client.get(f"/api/models/?app=../{b}/customer_service").json()["results"] == []
    assert not TrainingJob.objects.for_org(world["a"]).exists()
    assert _files(b) == before
    assert ModelVersion.objects.for_org(world["b"]).get().status == "active"
    assert not ModelVersion.objects.for_org(world["a"]).exists()


@pytest.mark.django_db
def test_downloads_open_only_files_built_from_the_callers_ids(world, user_client, client):
    """Rows that name another tenant's files (a tampered or buggy row) still serve only the caller's own."""
    from core.jobs.models import JobStatus
    from core.registry import services

    export = world["export"]
    owner = world["a_owner"]
    api = user_client(owner)
    own = _csv() + b"a row without a label,\n"  # rejected: A's report differs from B's
    dataset = services.dataset_upload(
        organisation=world["a"], name="mine", task="classification", data=own, filename="mine.csv"
    )
    Dataset.all_tenants.filter(pk=dataset.pk).update(report_path=world["dataset"].report_path)
    report = b"".join(api.get(f"/api/datasets/{dataset.pk}/report/").streaming_content)
    assert report == Path(dataset.report_path).read_bytes() != Path(world["dataset"].report_path).read_bytes()
    b_file = export.result["file"]
    for name in (f"../{world['b'].pk}/{b_file}", f"/{b_file}", "..", "."):
        job = TrainingJob.all_tenants.create(
            organisation=world["a"], kind="usage.export", status=JobStatus.SUCCEEDED, result={"file": name}
        )
        assert api.get(f"/api/jobs/{job.pk}/download/").status_code == 404, name
        client.force_login(owner)
        assert client.get(f"/jobs/{job.pk}/download/").status_code == 404, name


def _csv() -> bytes:
    return (DATA / "train_slice.csv").read_bytes().replace(b"text,category", b"text,label", 1)
