"""A trained intent model (head on frozen MiniLM, BANKING77 slice) for the chatbot's tests."""

import csv
import io
from pathlib import Path

import pytest
from django.test import Client

from core.jobs import services as jobs
from core.jobs.models import JobStatus, TrainingJob
from core.registry import services as registry

DATA = Path(__file__).resolve().parents[2] / "data" / "banking77"
PARKING = "Every branch has free customer parking behind the building, with spaces for bicycles too."


def login(user) -> Client:
    """A browser session signed in with the member's password."""
    from tests.conftest import PASSWORD

    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def member_headers(user) -> list[tuple[bytes, bytes]]:
    """A signed-in member's websocket handshake headers (session cookie, same-site origin)."""
    client = login(user)
    return [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://localhost"),
    ]


def banking_rows(name: str) -> list[tuple[str, str]]:
    with (DATA / name).open() as handle:
        return [(r["text"], r["category"]) for r in csv.DictReader(handle)]


def train_intent_model(organisation):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    writer.writerows(banking_rows("train_slice.csv"))
    dataset = registry.dataset_upload(
        organisation=organisation,
        name="intents",
        task="classification",
        data=out.getvalue().encode(),
        filename="intents.csv",
    )
    job = registry.model_train_start(
        organisation=organisation, dataset_id=dataset.pk, app="customer_service", task="intent", config=None
    )
    jobs.job_execute(job_id=job.pk)
    job = TrainingJob.objects.for_org(organisation).get(pk=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job.result["model_version"]


@pytest.fixture
def bot_org(make_org):
    """An organisation with an active intent model trained on 8 BANKING77 intents."""
    organisation, owner = make_org()
    version_id = train_intent_model(organisation)
    return organisation, owner, version_id
