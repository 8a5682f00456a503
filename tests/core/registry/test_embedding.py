"""Pairs datasets train an embedding model through the same job, registry and promotion rule."""

import csv
import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.jobs import services as jobs
from core.jobs.models import JobStatus
from core.registry.models import ModelVersion

DATA = Path(__file__).resolve().parents[3] / "data" / "banking77"


def _pairs_csv() -> bytes:
    by_intent = defaultdict(list)
    with (DATA / "train_slice.csv").open() as handle:
        for row in csv.DictReader(handle):
            by_intent[row["category"]].append(row["text"])
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["query", "positive"])
    for texts in by_intent.values():
        for i in range(0, len(texts) - 1, 2):
            writer.writerow([texts[i], texts[i + 1]])
    return out.getvalue().encode()


@pytest.mark.django_db
def test_pairs_train_an_embedder_that_serves_vectors(make_org, user_client, make_key, key_client):
    org, owner = make_org()
    client = user_client(owner)
    upload = {"name": "kb-pairs", "task": "pairs", "file": SimpleUploadedFile("pairs.csv", _pairs_csv())}
    dataset = client.post("/api/datasets/", upload, format="multipart").json()
    assert dataset["task"] == "pairs" and dataset["row_count"] == 80
    bad = client.post(
        "/api/models/train/",
        {"dataset": dataset["id"], "app": "customer_service", "task": "kb", "search": {"n_trials": 2}},
        format="json",
    )
    assert bad.status_code == 400 and "search is for classifiers" in bad.json()["error"]["message"]
    bad = client.post(
        "/api/models/train/",
        {"dataset": dataset["id"], "app": "customer_service", "task": "kb", "config": {"temperature": 5}},
        format="json",
    )
    assert bad.status_code == 400 and "temperature" in bad.json()["error"]["message"]
    created = client.post(
        "/api/models/train/",
        {
            "dataset": dataset["id"],
            "app": "customer_service",
            "task": "kb",
            "config": {"method": "lora", "epochs": 1, "max_length": 32, "batch_size": 16},
        },
        format="json",
    ).json()
    jobs.job_execute(job_id=created["id"])
    job = jobs.TrainingJob.objects.for_org(org).get(pk=created["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    version = ModelVersion.objects.for_org(org).get(pk=job.result["model_version"])
    assert version.status == "active" and version.manifest["task"] == "embedding"
    assert {"recall@1", "recall@5", "mrr"} <= set(version.metrics) and 0 < version.metrics["mrr"] <= 1

    _, secret = make_key(org, scopes=["predict"])
    api = key_client(secret)
    response = api.post(
        f"/api/models/{version.pk}/embed", {"texts": ["card not arrived", "exchange rate"]}, format="json"
    )
    assert response.status_code == 200, response.content
    vectors = np.array(response.json()["embeddings"])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    refused = api.post(f"/api/models/{version.pk}/predict", {"texts": ["x"]}, format="json")
    assert refused.status_code == 409 and "/embed" in refused.json()["error"]["message"]
    page = client.get(f"/models/{version.pk}/")
    assert page.status_code == 200 and b"MRR" in page.content
