"""Tenant isolation for datasets, models, predictions and job downloads: A never reaches B's rows."""

import io
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from core.jobs import services as jobs
from core.jobs.models import TrainingJob
from core.registry.models import Dataset, ModelVersion

DATA = Path(__file__).resolve().parents[2] / "data" / "banking77"
ALL_SCOPES = ["read", "predict", "train", "admin"]


@pytest.fixture
def world(make_org, make_key, tmp_path):
    """Org B with a dataset, an active model and a finished export job; org A with a key and nothing else."""
    a, a_owner = make_org("Alpha")
    b, b_owner = make_org("Bravo")
    path = tmp_path / "faq.csv"
    path.write_text((DATA / "train_slice.csv").read_text().replace("text,category", "text,label", 1))
    call_command(
        "train",
        org=b.slug,
        task="intent",
        file=path,
        method="head",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    export = jobs.job_create(organisation=b, kind="usage.export")
    jobs.job_execute(job_id=export.pk)
    _, a_secret = make_key(a, scopes=ALL_SCOPES)
    version = ModelVersion.objects.for_org(b).get()
    return {
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
