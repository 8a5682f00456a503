"""Batch prediction of a file as an infer job (run by a real worker), its result download and bad input."""

import csv
import io
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.billing.models import UsageEvent
from core.jobs.models import JobStatus, TrainingJob
from core.registry.models import ModelVersion
from tests.core.registry.trained import train_intent_model
from tests.worker import celery_worker, wait_for

DATA = Path(__file__).resolve().parents[3] / "data" / "banking77"


@pytest.fixture
def trained(make_org, tmp_path):
    org, owner = make_org()
    train_intent_model(org, tmp_path)
    return org, owner, ModelVersion.objects.for_org(org).get()


def _post(client, data: bytes, name: str, **extra):
    return client.post(
        "/api/batch-predictions/", {"file": SimpleUploadedFile(name, data), **extra}, format="multipart"
    )


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_batch_file_runs_on_the_infer_queue_and_downloads(trained, user_client):
    org, owner, version = trained
    client = user_client(owner)
    with (DATA / "test_slice.csv").open() as handle:
        rows = [{"text": r["text"], "label": r["category"]} for r in csv.DictReader(handle)]
    hostile = {
        "id": "=1+1",
        "text": '=HYPERLINK("http://x.example") my card was lost',
        "label": "lost_or_stolen_card",
    }
    lines = [{"id": str(i), **r} for i, r in enumerate(rows)] + [hostile]  # formulas, for a spreadsheet
    body = "\n".join(json.dumps(line) for line in lines).encode()
    with celery_worker(queues="infer") as proc:  # it purges the queues first: post inside
        created = _post(client, body, "batch.jsonl", model=version.pk)
        assert created.status_code == 201, created.content
        assert created.json()["queue"] == "infer"
        wait_for(
            lambda: (
                TrainingJob.objects.for_org(org).get(pk=created.json()["id"]).status
                in (JobStatus.SUCCEEDED, JobStatus.FAILED)
            ),
            timeout=180,
            proc=proc,
        )
    job = TrainingJob.objects.for_org(org).get(pk=created.json()["id"])
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["rows"] == len(lines) and job.result["scored_rows"] == len(lines)
    assert job.result["accuracy"] >= 0.8
    download = client.get(f"/api/jobs/{job.pk}/download/")
    table = list(csv.DictReader(io.StringIO(b"".join(download.streaming_content).decode())))
    assert len(table) == len(lines) and table[0]["id"] == "0" and table[0]["label"] in version.labels
    assert (table[-1]["id"], table[-1]["text"]) == ("'=1+1", "'" + hostile["text"])  # shown as text
    assert abs(sum(json.loads(table[0]["probabilities"]).values()) - 1) < 1e-4
    assert UsageEvent.objects.for_org(org).get(meter="predictions").quantity == len(lines)
    assert b"Download predictions" in client.get(f"/jobs/{job.pk}/").content


BAD_FILES = [  # (file, name, the refusal's words)
    (b"", "a.csv", "empty"),
    (b"\xff\xfehello", "a.txt", "not UTF-8"),
    (b"text,colour\nhi,red\n", "a.csv", "Unexpected columns ['colour']"),
    (b"text,label\nwhere is my card,no_such_intent\n", "a.csv", "not in the model's label map"),
    (b'{"text": ""}\n', "a.jsonl", "Row 1 has no text"),
    (b'{"text": "x"}\n[1]\n', "a.jsonl", "Line 2 must be a JSON object"),
    (b'{"text": {"a": 1}}\n', "a.jsonl", "Line 1: 'text' must be a string or a number"),
    (b"x" * 20_000, "a.txt", "limit is 10000"),
]


@pytest.mark.django_db
def test_bad_batch_files_and_unusable_models_are_refused_before_queueing(trained, user_client, make_org):
    org, owner, version = trained  # one trained model for every case: training is the test's cost
    client = user_client(owner)
    for data, name, message in BAD_FILES:
        response = _post(client, data, name, model=version.pk)
        assert response.status_code == 400 and message in response.json()["error"]["message"], (
            name,
            data[:20],
        )
    response = _post(client, b"hello\n", "a.txt")  # no model
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {"fields": ["model", "app", "task"]}
    assert not TrainingJob.objects.for_org(org).filter(kind="ml.batch_predict").exists()

    _, stranger = make_org()  # another organisation's model
    assert _post(user_client(stranger), b"hello\n", "a.txt", model=version.pk).status_code == 404
    ModelVersion.objects.for_org(org).filter(pk=version.pk).update(status="archived")
    response = _post(client, b"hello\n", "a.txt", model=version.pk)
    assert response.status_code == 409 and "archived" in response.json()["error"]["message"]
    assert client.get("/api/jobs/999999/download/").status_code == 404
