import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from core.registry.models import Dataset, ModelVersion

DATA = Path(__file__).resolve().parents[3] / "data" / "banking77"
pytestmark = pytest.mark.django_db


def test_upload_page_and_model_page(client, make_org, make_member, tmp_path):
    org, owner = make_org("Modelled")
    client.force_login(owner)
    csv_text = (DATA / "train_slice.csv").read_text().replace("text,category", "text,label", 1)
    response = client.post(
        "/datasets/",
        {"name": "faq", "task": "classification", "file": SimpleUploadedFile("faq.csv", csv_text.encode())},
        follow=True,
    )
    assert b"rows accepted" in response.content and Dataset.objects.for_org(org).count() == 1
    response = client.post(
        "/datasets/",
        {"name": "faq", "task": "classification", "file": SimpleUploadedFile("bad.csv", b"")},
        follow=True,
    )
    assert b"empty" in response.content and Dataset.objects.for_org(org).count() == 1
    path = tmp_path / "faq.csv"
    path.write_text(csv_text)
    out = StringIO()
    call_command(
        "train",
        org=org.slug,
        app="customer_service",
        task="intent",
        file=path,
        method="head",
        stdout=out,
        stderr=StringIO(),
    )
    version = ModelVersion.objects.for_org(org).get(pk=json.loads(out.getvalue())["model_version"])
    page = client.get(f"/models/{version.pk}/")
    assert page.status_code == 200 and b"Confusion matrix" in page.content and b"card_arrival" in page.content
    assert b"Roll back" not in page.content  # the first version: nothing earlier to go back to
    from django.utils import timezone

    from core.registry.models import VersionStatus

    second = ModelVersion.objects.for_org(org).get(pk=version.pk)
    ModelVersion.objects.for_org(org).filter(pk=version.pk).update(status=VersionStatus.READY)
    second.pk, second.version, second.promoted_at = None, 2, timezone.now()
    second.save()  # a later promoted version, active
    assert b"Roll back to version 1" in client.get(f"/models/{second.pk}/").content
    assert b"Roll back" not in client.get(f"/models/{version.pk}/").content  # not the active one
    ModelVersion.objects.for_org(org).filter(pk=second.pk).delete()
    ModelVersion.objects.for_org(org).filter(pk=version.pk).update(status=VersionStatus.ACTIVE)
    assert b"customer_service/intent v1" in client.get("/models/").content
    viewer = make_member(org)
    client.force_login(viewer)
    assert client.post(f"/models/{version.pk}/action/", {"action": "archive"}).status_code == 403
    other, other_owner = make_org()
    client.force_login(other_owner)
    assert client.get(f"/models/{version.pk}/").status_code == 404
    assert client.get(f"/datasets/{version.dataset_id}/report/").status_code == 404
