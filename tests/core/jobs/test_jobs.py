import pytest

from core.billing.models import Plan, UsageEvent
from core.errors import Conflict, InvalidInput, QuotaExceeded
from core.jobs import services as jobs
from core.jobs.handlers import register_job_kind
from core.jobs.models import JobStatus, TrainingJob
from tests.factories.jobs import TrainingJobFactory
from tests.worker import celery_worker, wait_for


def _job(org, job_id):
    return TrainingJob.objects.for_org(org).get(pk=job_id)


@pytest.mark.django_db
def test_job_state_machine_and_cancel(make_org):
    org, owner = make_org()
    job = jobs.job_create(organisation=org, kind="usage.export", created_by=owner)
    assert job.status == JobStatus.QUEUED and job.queue == "default"
    jobs.job_cancel(organisation=org, job_id=job.pk)
    assert _job(org, job.pk).status == JobStatus.CANCELLED
    assert jobs.job_start(job_id=job.pk) is None  # a cancelled job never starts
    with pytest.raises(Conflict, match="already cancelled"):
        jobs.job_cancel(organisation=org, job_id=job.pk)
    with pytest.raises(InvalidInput, match="Unknown job kind"):
        jobs.job_create(organisation=org, kind="nope")


@pytest.mark.django_db
def test_running_job_cancel_stops_handler_at_next_report(make_org):
    org, _ = make_org()
    seen = []

    def handler(job, reporter):
        reporter.progress(0.2, "first", force=True)
        jobs.job_cancel(organisation=job.organisation, job_id=job.pk)  # as if from the web
        try:
            reporter.progress(0.5, "second", force=True)
        finally:
            seen.append("stopped")
        return {"never": True}

    register_job_kind("test.cancel", queue="default", handler=handler, metered=False)
    job = TrainingJobFactory(organisation=org, kind="test.cancel")
    jobs.job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert seen == ["stopped"] and job.status == JobStatus.CANCELLED and job.progress == pytest.approx(0.2)
    assert job.result == {}


@pytest.mark.django_db
def test_handler_exception_fails_job_with_reason(make_org):
    org, _ = make_org()

    def handler(job, reporter):
        raise ValueError("the GPU caught fire")

    register_job_kind("test.boom", queue="default", handler=handler, metered=False)
    job = TrainingJobFactory(organisation=org, kind="test.boom")
    jobs.job_execute(job_id=job.pk)
    job.refresh_from_db()
    # The exception's text (it may name server paths) stays in the worker's log, not on the job.
    assert job.status == JobStatus.FAILED and "internal error" in job.error
    assert "GPU" not in job.error and "ValueError" not in job.error


@pytest.mark.django_db
def test_metered_job_quota_refusal_creates_nothing(make_org):
    org, _ = make_org()
    register_job_kind("test.train", queue="train", handler=lambda job, reporter: {}, metered=True)
    limit = Plan.objects.get(code="trial").training_jobs_per_month
    for _ in range(limit):
        jobs.job_create(organisation=org, kind="test.train")
    with pytest.raises(QuotaExceeded):
        jobs.job_create(organisation=org, kind="test.train")
    assert TrainingJob.objects.for_org(org).count() == limit
    assert UsageEvent.objects.for_org(org).filter(meter="training_jobs").count() == limit


@pytest.mark.django_db
def test_reaper_fails_silent_running_jobs(make_org):
    from datetime import timedelta

    from django.utils import timezone

    org, _ = make_org()
    old = timezone.now() - timedelta(minutes=10)
    stale = TrainingJobFactory(organisation=org, status=JobStatus.RUNNING, heartbeat_at=old)
    fresh = TrainingJobFactory(organisation=org, status=JobStatus.RUNNING, heartbeat_at=timezone.now())
    assert jobs.job_reap_stale(timeout=timedelta(minutes=5)) == 1
    assert _job(org, stale.pk).status == JobStatus.FAILED and "killed or crashed" in _job(org, stale.pk).error
    assert _job(org, fresh.pk).status == JobStatus.RUNNING


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_real_worker_runs_job_and_fails_bad_one(make_org, user_client):
    org, owner = make_org()
    from core.billing.services import usage_record

    usage_record(organisation=org, meter="predictions", quantity=3)
    client = user_client(owner)
    refused = client.post("/api/usage/exports/", {"period": "2026-13"}, format="json")
    assert refused.status_code == 400 and not TrainingJob.objects.for_org(org).exists()
    with celery_worker() as proc:
        ok = client.post("/api/usage/exports/", {}, format="json").json()
        # A bad row made some other way than the endpoint still fails with its reason on the worker.
        bad = jobs.job_create(organisation=org, kind="usage.export", params={"period": "2026-13"})
        wait_for(lambda: _job(org, ok["id"]).status == JobStatus.SUCCEEDED, proc=proc)
        wait_for(lambda: _job(org, bad.pk).status == JobStatus.FAILED, proc=proc)
    done = _job(org, ok["id"])
    assert done.result["rows"] == 1 and done.progress == 1.0 and done.worker
    assert "Invalid period '2026-13'" in _job(org, bad.pk).error
    detail = client.get(f"/api/jobs/{bad.pk}/").json()
    assert detail["status"] == "failed" and "YYYY-MM" in detail["error"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_only_takes_jobs_from_its_own_queue(make_org):
    import time

    org, owner = make_org()
    with celery_worker(queues="train") as proc:
        job = jobs.job_create(organisation=org, kind="usage.export", created_by=owner)  # a default-queue job
        time.sleep(4)
        assert proc.poll() is None and _job(org, job.pk).status == JobStatus.QUEUED
    with celery_worker(queues="default") as proc:
        again = jobs.job_create(organisation=org, kind="usage.export", created_by=owner)
        wait_for(lambda: _job(org, again.pk).status == JobStatus.SUCCEEDED, proc=proc)
