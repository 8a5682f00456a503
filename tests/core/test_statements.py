"""core.statements: one-row statements built once read, insert and update rows exactly as the ORM does, on
PostgreSQL (here) and on the embedded default's SQLite (in a process of its own)."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from django.db import DataError, connection, transaction
from django.test.utils import CaptureQueriesContext

from core import statements
from core.jobs.models import TrainingJob
from tests.worker import ROOT


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def round_trips(organisation, owner) -> dict:
    """The checks, run on whichever database the process has; returns what failed (empty: all held)."""
    failed = {}
    job = TrainingJob(
        organisation=organisation,
        kind="train",
        params={"lr": 0.5, "labels": ["a", "b"], "nested": {"x": None}},
        created_by=owner,
        started_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    )
    statements.insert(job)
    orm = TrainingJob.all_tenants.get(pk=job.pk)
    if _fields(orm) != _fields(job):
        failed["insert"] = [_fields(orm), _fields(job)]
    if job.created_at is None or job.created_at != orm.created_at:
        failed["created_at"] = [job.created_at, orm.created_at]
    read = statements.row_get(TrainingJob, pk=job.pk)
    if read is None or _fields(read) != _fields(orm) or read._state.adding:
        failed["row_get"] = [_fields(read) if read else None, _fields(orm)]
    other = TrainingJob.all_tenants.create(organisation=organisation, kind="other", params={"k": 1})
    when = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    with transaction.atomic():
        updated = statements.row_update_returning(
            TrainingJob, job.pk, status="running", result={"ok": [1, 2]}, heartbeat_at=when, progress=0.25
        )
    orm = TrainingJob.all_tenants.get(pk=job.pk)
    if updated is None or _fields(updated) != _fields(orm):
        failed["row_update_returning"] = [_fields(updated) if updated else None, _fields(orm)]
    if (orm.status, orm.result, orm.heartbeat_at, orm.progress) != ("running", {"ok": [1, 2]}, when, 0.25):
        failed["updated values"] = [orm.status, orm.result, orm.heartbeat_at, orm.progress]
    if statements.row_update(TrainingJob, job.pk, message="m") is not True:
        failed["row_update"] = "not there"
    if statements.row_update(TrainingJob, other.pk + 1000, message="m") is not False:
        failed["row_update missing"] = "said there"
    if statements.row_get(TrainingJob, pk=other.pk + 1000) is not None:
        failed["row_get missing"] = "found"
    untouched = TrainingJob.all_tenants.get(pk=other.pk)
    if (untouched.message, untouched.params) != ("", {"k": 1}):
        failed["other row"] = [untouched.message, untouched.params]
    by_fields = statements.row_get(TrainingJob, organisation=organisation.pk, kind="other")
    if by_fields is None or by_fields.pk != other.pk:
        failed["row_get by fields"] = by_fields.pk if by_fields else None
    failed.update(rows_updated(organisation))
    return failed


def rows_updated(organisation) -> dict:
    """``rows_update`` writes each object's fields, as ``bulk_update`` would, and nothing else."""
    failed = {}
    jobs = [TrainingJob.all_tenants.create(organisation=organisation, kind=f"batch{i}") for i in range(3)]
    bystander = TrainingJob.all_tenants.create(organisation=organisation, kind="bystander", message="keep")
    when = datetime(2026, 7, 8, 9, 10, 11, 12, tzinfo=UTC)
    for i, job in enumerate(jobs):
        job.status, job.progress, job.message = "running", i / 4, f"row {i}"
        job.result = {"i": i, "probabilities": {"a": 0.25 * i}} if i else {}
        job.heartbeat_at = when if i != 1 else None
        job.kind = "not written"  # not among the names: stays as stored
    statements.rows_update(jobs, ["status", "progress", "message", "result", "heartbeat_at"])
    statements.rows_update([], ["status"])  # nothing to write: no statement
    for i, job in enumerate(jobs):
        orm = TrainingJob.all_tenants.get(pk=job.pk)
        got = (orm.status, orm.progress, orm.message, orm.result, orm.heartbeat_at, orm.kind)
        want = ("running", i / 4, f"row {i}", job.result, job.heartbeat_at, f"batch{i}")
        if got != want:
            failed[f"rows_update {i}"] = [got, want]
    untouched = TrainingJob.all_tenants.get(pk=bystander.pk)
    if (untouched.status, untouched.message) != ("queued", "keep"):
        failed["rows_update bystander"] = [untouched.status, untouched.message]
    return failed


def test_rows_are_read_inserted_and_updated_as_the_orm_does(make_org):
    org, owner = make_org()
    assert round_trips(org, owner) == {}


def test_the_statements_are_logged_and_a_locked_read_locks(make_org):
    org, _owner = make_org()
    job = TrainingJob.all_tenants.create(organisation=org, kind="train")
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        locked = statements.row_get(TrainingJob, lock=True, pk=job.pk)
        statements.row_update(TrainingJob, job.pk, message="seen")
    assert locked is not None and locked.pk == job.pk
    assert queries.captured_queries[0]["sql"].endswith("FOR UPDATE")
    assert queries.captured_queries[1]["sql"].startswith('UPDATE "jobs_trainingjob" SET "message" = ')
    assert TrainingJob.all_tenants.get(pk=job.pk).message == "seen"


def test_rows_update_is_one_statement_on_postgresql_and_refuses_a_value_too_long(make_org):
    org, _owner = make_org()
    jobs = [TrainingJob.all_tenants.create(organisation=org, kind="train") for _ in range(4)]
    for job in jobs:
        job.message, job.progress = f"done {job.pk}", 1.0
    with CaptureQueriesContext(connection) as queries:
        statements.rows_update(jobs, ["message", "progress"])
    assert len(queries.captured_queries) == 1
    sql = queries.captured_queries[0]["sql"]
    assert sql.startswith('UPDATE "jobs_trainingjob" SET "message" = v."message"') and "FROM (VALUES" in sql
    stored = TrainingJob.all_tenants.filter(pk__in=[j.pk for j in jobs]).values_list("message", "progress")
    assert sorted(stored) == sorted((f"done {j.pk}", 1.0) for j in jobs)
    jobs[1].message = "x" * 301  # the column holds 300: refused, as an ORM update refuses it, not cut
    with pytest.raises(DataError), transaction.atomic():
        statements.rows_update(jobs, ["message"])
    assert TrainingJob.all_tenants.get(pk=jobs[1].pk).message == f"done {jobs[1].pk}"


SQLITE = """
import json, os
os.environ['DJANGO_SETTINGS_MODULE'] = 'core.settings'
import django
django.setup()
from django.core.management import call_command
from django.db import connection
for app in ('tenancy', 'jobs', 'billing'):
    call_command('migrate', app, verbosity=0)
from core.tenancy import services
org, owner = services.organisation_sign_up(
    organisation_name='S', email='s@example.com', password='pw-123456789x'
)
from tests.core.test_statements import round_trips
print(json.dumps([connection.vendor, round_trips(org, owner)], default=str))
"""


def test_the_same_on_the_embedded_default_sqlite(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["TRELLIS_VAR_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", SQLITE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["sqlite", {}]
