"""Identifiers that become parts of store paths match in full: ``$`` in a Python pattern also matches before a
trailing newline, so ``intent\\n`` passed as a task slug (``manage.py train --task``) and named a folder."""

import pytest

from core.billing.jobs import usage_export_start
from core.errors import InvalidInput
from core.jobs.models import TrainingJob
from core.registry.paths import batch_file, validate_task
from core.storage import UnsafePath, export_path


def test_a_task_with_a_trailing_newline_is_not_a_slug():
    assert validate_task("intent") == "intent"
    with pytest.raises(InvalidInput):
        validate_task("intent\n")


def test_file_names_with_a_trailing_newline_are_refused():
    assert export_path(1, "predictions-job1.csv").name == "predictions-job1.csv"
    with pytest.raises(UnsafePath):
        export_path(1, "predictions-job1.csv\n")
    with pytest.raises(UnsafePath):
        batch_file(organisation_id=1, name="0" * 32 + ".json\n")


@pytest.mark.django_db
def test_a_usage_export_period_with_a_trailing_newline_is_refused_before_a_job(make_org):
    org, _owner = make_org()
    with pytest.raises(InvalidInput):
        usage_export_start(organisation=org, period="2026-11\n")


@pytest.mark.django_db
def test_a_usage_export_period_in_other_digits_is_refused_before_a_job(make_org, user_client):
    r"""``\d`` matches any Unicode digit: ``９９９９-11`` passed the API, then failed in the job."""
    org, owner = make_org()
    with pytest.raises(InvalidInput):
        usage_export_start(organisation=org, period="９９９９-11")
    refused = user_client(owner).post("/api/usage/exports/", {"period": "２０２６-11"}, format="json")
    assert refused.status_code == 400, refused.content
    assert not TrainingJob.objects.for_org(org).exists()
