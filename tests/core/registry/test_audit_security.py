"""Issue 8, items 1, 2 and 5: what the outside audit did as an attacker, refused.

1. ``app``/``task`` of a training request named a folder: ``../<other org>/customer_service`` overwrote
   another tenant's active model. Every entry point refuses them with 400, and the job handler again.
2. ``POST /api/jobs/`` took internal parameters from clients (an ``input`` path that was read, served and
   deleted). It is gone (405); the batch handler reads only the file its start wrote; failed jobs do not show
   server paths; invalid training input counts nothing; a batch is charged at its start, all or nothing.
5. One upload limit for every upload path, checked before the body is read.
"""

import hashlib
import io
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.handlers.asgi import ASGIRequest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from core.billing import services as billing
from core.billing.models import Plan, UsageEvent
from core.errors import InvalidInput
from core.jobs import services as jobs
from core.jobs.models import JobStatus, TrainingJob
from core.registry import services as registry
from core.registry.models import Dataset, ModelVersion
from core.registry.paths import batch_file, model_apps
from core.storage import UnsafePath, org_path
from core.web.middleware import BodyLimitMiddleware

DATA = Path(__file__).resolve().parents[3] / "data" / "banking77"
CSV = (DATA / "train_slice.csv").read_bytes().replace(b"text,category", b"text,label", 1)


def org_files(org_id: int) -> dict[str, str]:
    """Every file an organisation has in the model store, the dataset store and the exports, with its hash."""
    found = {}
    for root in (
        Path(settings.MODEL_STORE),
        Path(settings.DATASET_STORE),
        Path(settings.VAR_DIR) / "exports",
    ):
        base = root / str(org_id)
        for path in sorted(base.rglob("*")) if base.exists() else []:
            if path.is_file():
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _trained(org, tmp_path) -> ModelVersion:
    path = tmp_path / f"faq-{org.pk}.csv"
    path.write_bytes(CSV)
    call_command(
        "train",
        app="customer_service",
        org=org.slug,
        task="intent",
        file=path,
        method="head",
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    return ModelVersion.objects.for_org(org).get()


@pytest.fixture
def victim_and_attacker(make_org, make_key, tmp_path):
    """B has an active customer_service/intent model; A has a dataset of its own and an all-scope key."""
    a, a_owner = make_org("Attacker")
    b, b_owner = make_org("Victim")
    version = _trained(b, tmp_path)
    dataset = registry.dataset_upload(
        organisation=a, name="mine", task="classification", data=CSV, filename="mine.csv"
    )
    _, secret = make_key(a, scopes=["read", "predict", "train", "admin"])
    return {"a": a, "a_owner": a_owner, "a_secret": secret, "a_dataset": dataset, "b": b, "version": version}


def _training_counted(org) -> int:
    return UsageEvent.objects.for_org(org).filter(meter="training_jobs").count()


# --- 1. path traversal into the model store ---------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ["session", "key"])
def test_traversal_through_the_train_api_is_refused(victim_and_attacker, caller, user_client, key_client):
    w = victim_and_attacker
    before = org_files(w["b"].pk)
    client = user_client(w["a_owner"]) if caller == "session" else key_client(w["a_secret"])
    for app, task in [
        (f"../{w['b'].pk}/customer_service", "intent"),
        ("customer_service", f"../../{w['b'].pk}/customer_service/intent"),
        ("customer_service", "intent/../../x"),
        ("/tmp/x", "intent"),
        ("customer_service", "Intent"),
        ("customer_service", "i" * 51),
    ]:
        body = {"dataset": w["a_dataset"].pk, "app": app, "task": task}
        response = client.post("/api/models/train/", body, format="json")
        assert response.status_code == 400, (app, task, response.content)
        assert set(response.json()["error"]) == {"code", "message", "details"}
    assert not TrainingJob.objects.for_org(w["a"]).exists() and _training_counted(w["a"]) == 0
    assert org_files(w["b"].pk) == before
    assert ModelVersion.objects.for_org(w["b"]).get().status == "active"


@pytest.mark.django_db
def test_traversal_through_the_html_train_form_is_refused(victim_and_attacker, client):
    w = victim_and_attacker
    before = org_files(w["b"].pk)
    client.force_login(w["a_owner"])
    url = f"/datasets/{w['a_dataset'].pk}/train/"
    for app, task in [
        ("../../../../tmp/x", "intent"),
        (f"../{w['b'].pk}/customer_service", "intent"),
        ("customer_service", f"../../{w['b'].pk}/customer_service/intent"),
        ("", ""),
    ]:
        response = client.post(url, {"app": app, "task": task, "method": "head"})
        assert response.status_code == 400, (app, task, response.status_code)
        assert b"Unknown product" in response.content or b"A task is 1 to 50" in response.content
    assert not TrainingJob.objects.for_org(w["a"]).exists() and _training_counted(w["a"]) == 0
    assert org_files(w["b"].pk) == before
    # Positive control: a registered product and a task slug start a job; the form offers only products.
    assert b"<option>customer_service</option>" in client.get("/datasets/").content
    ok = client.post(url, {"app": "customer_service", "task": "intent", "method": "head"})
    assert ok.status_code == 302 and TrainingJob.objects.for_org(w["a"]).count() == 1


@pytest.mark.django_db
def test_the_train_handler_refuses_a_traversal_job_row(victim_and_attacker):
    """Defence in depth: a job row made without the start service (a bug, an old row) writes nothing."""
    w = victim_and_attacker
    before = org_files(w["b"].pk)
    bad = {"dataset_id": w["a_dataset"].pk, "app": f"../{w['b'].pk}/customer_service", "task": "intent"}
    for params in (bad, {**bad, "app": "customer_service", "task": f"../../../{w['b'].pk}/x"}, {}):
        job = jobs.job_create(organisation=w["a"], kind="ml.train", params=params)
        jobs.job_execute(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED and str(settings.MODEL_STORE) not in job.error, job.error
    assert org_files(w["b"].pk) == before
    assert not ModelVersion.objects.for_org(w["a"]).exists()
    assert ModelVersion.objects.for_org(w["b"]).get().status == "active"


@pytest.mark.django_db
def test_train_command_refuses_a_traversal_app(make_org, tmp_path):
    org, _ = make_org()
    path = tmp_path / "faq.csv"
    path.write_bytes(CSV)
    with pytest.raises(Exception, match="Unknown product"):
        call_command("train", org=org.slug, app="../1/customer_service", task="intent", file=path)
    assert not Dataset.objects.for_org(org).exists() and not TrainingJob.objects.for_org(org).exists()


def test_store_paths_are_built_only_from_checked_parts(tmp_path):
    assert org_path(tmp_path, 7, "customer_service", "intent", "v1") == (
        tmp_path / "7/customer_service/intent/v1"
    )
    for parts in [("..", "8"), ("../8/x",), ("/etc/passwd",), ("a/../../8",), ("",), ("a\x00b",)]:
        with pytest.raises(UnsafePath):
            org_path(tmp_path, 7, *parts)
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "link").symlink_to(tmp_path / "8", target_is_directory=True)
    with pytest.raises(UnsafePath):  # a symlink out of the folder is an escape too
        org_path(tmp_path, 7, "link", "x")
    for org_id in (0, -1, "7", True):
        with pytest.raises(UnsafePath):
            org_path(tmp_path, org_id, "x")
    # The products are the installed verticals (read from the app registry) and the platform itself.
    assert {"customer_service", "finance_monitor", "recommender", "core"} <= set(model_apps())
    assert not {"registry", "billing", "auth", "rest_framework"} & set(model_apps())


# --- 2. the generic jobs endpoint, the batch handler, counting ---------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ["session", "key"])
def test_generic_job_creation_is_refused(make_org, make_key, caller, user_client, key_client, tmp_path):
    org, owner = make_org()
    _, secret = make_key(org, scopes=["read", "predict", "train", "admin"])
    client = user_client(owner) if caller == "session" else key_client(secret)
    target = tmp_path / "secret.json"
    target.write_text('[{"text": "secret"}]')
    for body in [
        {"kind": "ml.train", "params": {"dataset_id": 1, "app": "../2/customer_service", "task": "intent"}},
        {"kind": "ml.train", "params": {}},
        {"kind": "ml.batch_predict", "params": {"model_version": 1, "input": str(target)}},
        {"kind": "usage.export", "params": {"period": "../../x"}},
    ]:
        response = client.post("/api/jobs/", body, format="json")
        assert response.status_code == 405, response.content
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert not TrainingJob.objects.for_org(org).exists() and _training_counted(org) == 0
    assert target.read_text() == '[{"text": "secret"}]'
    assert client.get("/api/jobs/").status_code == 200  # listing stays
    schema = client.get("/api/schema/?format=json").json()
    assert "post" not in schema["paths"]["/api/jobs/"]
    # Exports have their own endpoint, whose period is checked before a job exists.
    assert client.post("/api/usage/exports/", {"period": "../../x"}, format="json").status_code == 400
    assert not TrainingJob.objects.for_org(org).exists()
    assert client.post("/api/usage/exports/", {"period": "2026-11"}, format="json").status_code == 201


@pytest.mark.django_db
def test_invalid_training_input_counts_nothing(make_org, user_client):
    org, owner = make_org()
    client = user_client(owner)
    dataset = registry.dataset_upload(
        organisation=org, name="mine", task="classification", data=CSV, filename="mine.csv"
    )
    for body, status in [
        ({}, 400),
        ({"app": "customer_service", "task": "intent"}, 400),
        ({"dataset": 999_999, "app": "customer_service", "task": "intent"}, 404),
        ({"dataset": dataset.pk, "app": "nope", "task": "intent"}, 400),
        ({"dataset": dataset.pk, "app": "customer_service", "task": "intent", "config": {"epochs": -1}}, 400),
        ({"dataset": dataset.pk, "app": "customer_service", "task": "intent", "config": {"x": 1}}, 400),
    ]:
        assert client.post("/api/models/train/", body, format="json").status_code == status, body
    for kwargs in ({"dataset_id": "1"}, {"dataset_id": dataset.pk, "app": "../x"}, {"dataset_id": None}):
        with pytest.raises(InvalidInput):
            registry.model_train_start(
                organisation=org, **{"app": "customer_service", "task": "intent", **kwargs}
            )
    assert not TrainingJob.objects.for_org(org).exists() and _training_counted(org) == 0


@pytest.mark.django_db
def test_batch_job_reads_only_its_own_generated_file(victim_and_attacker, tmp_path):
    """B's batch job rows whose params point outside B's batch folder fail without reading, deleting or naming
    the file; the other tenant's pending batch input is untouched."""
    w = victim_and_attacker
    b, version = w["b"], w["version"]
    outside = tmp_path / "server-secret.json"
    outside.write_text('[{"text": "top secret"}]')
    a_pending = batch_file(organisation_id=w["a"].pk, name=f"{uuid.uuid4().hex}.json")
    a_pending.parent.mkdir(parents=True, exist_ok=True)
    a_pending.write_text('[{"text": "A\'s customers"}]')
    a_before, b_before = org_files(w["a"].pk), org_files(b.pk)
    missing = f"{uuid.uuid4().hex}.json"
    for name in (str(outside), f"../../{w['a'].pk}/batch/{a_pending.name}", f"../{outside.name}", missing):
        job = jobs.job_create(
            organisation=b, kind="ml.batch_predict", params={"model_version": version.pk, "input": name}
        )
        jobs.job_execute(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == JobStatus.FAILED and job.result == {}, (name, job.status)
        for leak in (str(tmp_path), str(settings.DATASET_STORE), "secret", "Errno", a_pending.name, missing):
            assert leak not in job.error, (name, job.error)
    assert "gone" in job.error  # the missing file: a reason the owner can act on
    assert outside.read_text() == '[{"text": "top secret"}]'
    assert org_files(w["a"].pk) == a_before
    assert not UsageEvent.objects.for_org(b).filter(meter="predictions").exists()
    assert org_files(b.pk) == b_before  # no output written either


def _batch(client, lines: int, version):
    body = "\n".join(f"where is my card {n}" for n in range(lines)).encode()
    upload = {"file": SimpleUploadedFile("batch.txt", body), "model": version.pk}
    return client.post("/api/batch-predictions/", upload, format="multipart")


def _predictions_used(org) -> float:
    return float(billing.period_used(organisation=org, meter="predictions"))


@pytest.mark.django_db
def test_batch_over_remaining_quota_is_refused_up_front_and_charged_at_start(make_org, user_client, tmp_path):
    org, owner = make_org()
    version = _trained(org, tmp_path)
    client = user_client(owner)
    limit = Plan.objects.get(code="trial").predictions_per_month
    billing.usage_record(organisation=org, meter="predictions", quantity=limit - 3)
    pending = sorted((Path(settings.DATASET_STORE) / str(org.pk) / "batch").glob("*.json"))

    refused = _batch(client, 5, version)
    assert refused.status_code == 402, refused.content
    assert "5 rows" in refused.json()["error"]["message"] and "only 3" in refused.json()["error"]["message"]
    details = refused.json()["error"]["details"]  # what the batch adds and what remains, as README says
    assert details["requested"] == 5 and details["remaining"] == 3, details
    assert not TrainingJob.objects.for_org(org).filter(kind="ml.batch_predict").exists()
    assert sorted((Path(settings.DATASET_STORE) / str(org.pk) / "batch").glob("*.json")) == pending
    assert _predictions_used(org) == limit - 3

    fits = _batch(client, 3, version)  # takes the last 3 at once: a second batch cannot pass on them
    assert fits.status_code == 201 and _predictions_used(org) == limit
    assert _batch(client, 1, version).status_code == 402
    assert TrainingJob.objects.for_org(org).filter(kind="ml.batch_predict").count() == 1

    # The job fails (its model was archived meanwhile): the 3 predictions are given back.
    ModelVersion.objects.for_org(org).filter(pk=version.pk).update(status="archived")
    jobs.job_execute(job_id=fits.json()["id"])
    assert TrainingJob.objects.for_org(org).get(pk=fits.json()["id"]).status == JobStatus.FAILED
    assert _predictions_used(org) == limit - 3


@pytest.mark.django_db
def test_batch_charges_once_when_it_runs(make_org, user_client, tmp_path):
    org, owner = make_org()
    version = _trained(org, tmp_path)
    created = _batch(user_client(owner), 4, version)
    assert created.status_code == 201 and _predictions_used(org) == 4
    jobs.job_execute(job_id=created.json()["id"])
    job = TrainingJob.objects.for_org(org).get(pk=created.json()["id"])
    assert job.status == JobStatus.SUCCEEDED and job.result["rows"] == 4, job.error
    assert _predictions_used(org) == 4
    assert UsageEvent.objects.for_org(org).filter(meter="predictions").count() == 1
    assert not batch_file(organisation_id=org.pk, name=job.params["input"]).exists()  # its input is gone
    assert user_client(owner).get(f"/api/jobs/{job.pk}/download/").status_code == 200
    # A batch cancelled before a worker took it gives its rows back as well.
    queued = _batch(user_client(owner), 2, version)
    assert queued.status_code == 201 and _predictions_used(org) == 6
    assert user_client(owner).post(f"/api/jobs/{queued.json()['id']}/cancel/").status_code == 200
    assert _predictions_used(org) == 4
    # and its input file: no worker will read it (start and cancel in a loop filled the disk, quota-free)
    assert not batch_file(organisation_id=org.pk, name=queued.json()["params"]["input"]).exists()
    # And so does one whose worker died (the reaper fails it).
    lost = _batch(user_client(owner), 1, version).json()["id"]
    stale = timezone.now() - timedelta(hours=1)
    TrainingJob.objects.for_org(org).filter(pk=lost).update(status=JobStatus.RUNNING, heartbeat_at=stale)
    assert _predictions_used(org) == 5 and jobs.job_reap_stale() == 1
    assert _predictions_used(org) == 4


# --- 5. one upload limit, before the body is read ----------------------------------------------------------


def _multipart(size: int, **fields: str) -> dict:
    return {"file": SimpleUploadedFile("big.csv", b"intent,answer\n" + b"x" * size), **fields}


@pytest.mark.django_db
@override_settings(UPLOAD_MAX_BYTES=4096)
def test_oversized_html_dataset_upload_is_refused_before_parsing(make_org, client):
    org, owner = make_org()
    client.force_login(owner)
    big = CSV * 3
    assert len(big) > 4096
    response = client.post(
        "/datasets/", {"name": "big", "task": "classification", "file": SimpleUploadedFile("big.csv", big)}
    )
    assert response.status_code == 413 and b"File too large" in response.content
    assert b"the limit is 4096 bytes" in response.content
    # A body that no parser could read gets the same answer: nothing looked at it.
    garbage = client.post("/datasets/", b"\x00" * 5000, content_type="multipart/form-data; boundary=nowhere")
    assert garbage.status_code == 413
    assert not Dataset.objects.for_org(org).exists()
    small = client.post(
        "/datasets/",
        {"name": "ok", "task": "classification", "file": SimpleUploadedFile("ok.csv", CSV[:3000])},
    )
    assert small.status_code == 302


@pytest.mark.django_db
@override_settings(UPLOAD_MAX_BYTES=4096, API_MAX_BODY_BYTES=1024)
def test_every_upload_path_has_the_one_limit(make_org, user_client, client):
    org, owner = make_org()
    api = user_client(owner)
    for url, fields in [
        ("/api/datasets/", {"name": "big", "task": "classification"}),
        ("/api/batch-predictions/", {}),
        ("/api/customer-service/templates/import", {}),
        ("/api/customer-service/qa/import", {}),
    ]:
        response = api.post(url, _multipart(5000, **fields), format="multipart")
        assert response.status_code == 413, (url, response.status_code)
        error = response.json()["error"]
        assert error["code"] == "too_large" and "4096" in error["message"], url
    client.force_login(owner)
    for page in ("templates/import/", "qa/import/"):
        response = client.post(f"/customer-service/{page}", _multipart(5000))
        assert response.status_code == 413 and b"File too large" in response.content, page
    assert not Dataset.objects.for_org(org).exists()
    # The same limit, not the smaller one for JSON bodies: a 2 KB template file is accepted by the API.
    rows = b"intent,answer\n" + b"".join(b"intent_%d,Answer number %d.\n" % (n, n) for n in range(80))
    assert 1024 < len(rows) < 4096
    imported = api.post(
        "/api/customer-service/templates/import",
        {"file": SimpleUploadedFile("t.csv", rows)},
        format="multipart",
    )
    assert imported.status_code == 201 and imported.json()["saved"] == 80
    # JSON bodies keep their own, smaller limit.
    assert api.patch("/api/organisation/", {"name": "x" * 2000}, format="json").status_code == 413


@override_settings(UPLOAD_MAX_BYTES=4096)
def test_a_body_without_content_length_is_cut_at_the_limit():
    """Chunked bodies declare no length: the body is read through a stream that stops at the limit."""

    def view(request):
        return request.body

    scope = {"type": "http", "method": "POST", "path": "/datasets/", "headers": [], "query_string": b""}
    small = ASGIRequest(scope, io.BytesIO(b"x" * 100))
    assert BodyLimitMiddleware(view)(small) == b"x" * 100
    big = ASGIRequest(scope, io.BytesIO(b"x" * 5000))
    with pytest.raises(RequestDataTooBig):
        BodyLimitMiddleware(view)(big)
