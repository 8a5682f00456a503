"""Encryption at rest: uploads and model artifacts sealed with the organisation's key, wrapped by the master
key; models still serve; files written before it was turned on still read."""

import json

import pytest
from cryptography.fernet import Fernet

from core.privacy import crypto
from core.privacy.models import OrganisationKey
from core.registry.paths import dataset_dir
from core.registry.services import dataset_rows, dataset_upload, model_predict
from tests.core.registry.trained import train_intent_model


@pytest.fixture
def encrypted(settings):
    settings.TRELLIS_ENCRYPT_AT_REST = True
    settings.TRELLIS_MASTER_KEY = Fernet.generate_key().decode()
    crypto._keys.clear()
    yield settings
    crypto._keys.clear()


CSV = b"text,label\n" + b"".join(
    f"card number question {i},card\nhello there {i},greet\n".encode() for i in range(20)
)


@pytest.mark.django_db
def test_dataset_files_are_sealed_and_read_back(make_org, encrypted):
    org, _owner = make_org()
    other, _ = make_org()
    dataset = dataset_upload(organisation=org, name="faq", task="classification", data=CSV, filename="f.csv")
    folder = dataset_dir(organisation_id=org.pk, dataset_id=dataset.pk)
    raw = (folder / "rows.json").read_bytes()
    assert raw.startswith(crypto.MAGIC) and b"card number" not in raw
    assert (folder / "report.csv").read_bytes().startswith(crypto.MAGIC)
    assert len(dataset_rows(dataset=dataset)["train"]) == dataset.split_counts["train"]
    wrapped = OrganisationKey.objects.get(organisation=org).wrapped_key
    assert Fernet(encrypted.TRELLIS_MASTER_KEY).decrypt(wrapped.encode()) == crypto.organisation_key(org.pk)
    assert crypto.organisation_key(org.pk) != crypto.organisation_key(other.pk)
    with pytest.raises(Exception, match="does not decrypt"):  # another tenant's key cannot open it
        crypto.decrypt_for(other.pk, raw)
    encrypted.TRELLIS_MASTER_KEY = Fernet.generate_key().decode()
    crypto._keys.clear()
    with pytest.raises(Exception, match="does not unwrap"):
        dataset_rows(dataset=dataset)


@pytest.mark.django_db
def test_plaintext_files_still_read_when_encryption_is_on(make_org, settings):
    org, _ = make_org()
    dataset = dataset_upload(organisation=org, name="faq", task="classification", data=CSV, filename="f.csv")
    folder = dataset_dir(organisation_id=org.pk, dataset_id=dataset.pk)
    assert json.loads((folder / "rows.json").read_bytes())  # off by default: plain JSON
    settings.TRELLIS_ENCRYPT_AT_REST, settings.TRELLIS_MASTER_KEY = True, Fernet.generate_key().decode()
    assert dataset_rows(dataset=dataset)["train"]


@pytest.mark.django_db
def test_model_artifacts_are_sealed_and_the_model_serves(make_org, encrypted, tmp_path):
    org, _owner = make_org()
    version = train_intent_model(org, tmp_path)
    from pathlib import Path

    files = [p for p in Path(version.artifact_path).rglob("*") if p.is_file()]
    assert files and all(p.read_bytes().startswith(crypto.MAGIC) for p in files)
    result = model_predict(organisation=org, version_id=version.pk, texts=["I lost my card"])
    assert result["predictions"][0]["label"]
