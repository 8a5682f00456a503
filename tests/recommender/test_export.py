"""An organisation's catalogue, events, weights and recommender model leave in its export and come back in
another organisation, which then serves the same answer."""

import io
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from core.privacy import crypto
from recommender.models import Event, Item, RecommenderSettings
from recommender.services import events
from tests.recommender.conftest import train_now

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def stores(settings, tmp_path):
    settings.VAR_DIR = tmp_path / "var"
    settings.MODEL_STORE = tmp_path / "models"
    settings.DATASET_STORE = tmp_path / "datasets"
    crypto._keys.clear()
    yield tmp_path
    crypto._keys.clear()


def _export(client) -> bytes:
    from core.jobs import services as jobs

    started = client.post("/api/organisation/exports/")
    assert started.status_code == 201, started.content
    jobs.job_execute(job_id=started.json()["id"])
    listed = client.get("/api/organisation/exports/").json()["results"][0]
    response = client.get(listed["download"])
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_round_trip_keeps_the_catalogue_events_and_model(shop, make_org, user_client):
    old, owner = shop
    events.event_weights_set(organisation=old, weights={"view": 0.5})
    train_now(old)
    params = {"user": "u0", "k": 3}
    before = user_client(owner).get("/api/recommender/recommendations", params).json()
    data = _export(user_client(owner))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = set(zf.namelist())
    assert {"rows/recommender.Item.jsonl", "rows/recommender.Event.jsonl"} <= names
    assert any(n.startswith("files/models/recommender/ranking/v1/") for n in names)
    new, new_owner = make_org()
    answer = user_client(new_owner).post(
        "/api/organisation/import/",
        {"archive": SimpleUploadedFile("org.zip", data, content_type="application/zip")},
        format="multipart",
    )
    assert answer.status_code == 201, answer.content
    assert Item.objects.for_org(new).count() == Item.objects.for_org(old).count() == 6
    assert Event.objects.for_org(new).count() == Event.objects.for_org(old).count() == 61
    assert RecommenderSettings.objects.for_org(new).get().event_weights == {"view": 0.5}
    after = user_client(new_owner).get("/api/recommender/recommendations", params).json()
    assert after["items"] == before["items"] and after["model_version"] != before["model_version"]
