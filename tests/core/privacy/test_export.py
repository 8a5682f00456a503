"""An owner exports everything the organisation owns as one archive, and the owner of a new organisation
re-imports it: the same rows table by table, relations intact, the model serving the same predictions, the
files in the new organisation's folders (sealed with its key when encryption at rest is on), nothing of it
reachable from the old organisation. Hostile or foreign archives are refused with nothing written; only
owners, signed in, may export or import."""

import hashlib
import io
import json
import stat
import zipfile
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from core.billing import services as billing
from core.billing.meters import Meter
from core.billing.models import Plan, Subscription
from core.jobs import services as jobs
from core.privacy import crypto
from core.privacy.audit import Action
from core.privacy.export import exports_sweep
from core.privacy.importing import imported_models, organisation_data
from core.privacy.models import AuditEvent
from core.privacy.ownership import label, rows_of, store_roots, undeclared_models
from core.registry.models import Dataset, ModelVersion
from core.registry.paths import dataset_dir
from core.registry.services import dataset_rows, dataset_upload, model_predict
from core.tenancy import services as tenancy
from core.tenancy.models import Membership, Role
from customer_service import services as cs
from customer_service.models import Conversation, InternalNote, Message
from finance_monitor.models import Document, Entity, Mention, TrendBucket
from finance_monitor.services import documents as fm_documents
from finance_monitor.services import entities as fm_entities
from tests.conftest import PASSWORD
from tests.core.registry.trained import train_intent_model

pytestmark = pytest.mark.django_db
TEXTS = ["I lost my card", "when will my card arrive?", "what is the exchange rate"]
CSV = b"text,label\n" + b"".join(
    f"card question {i},card\nhello there {i},greet\n".encode() for i in range(12)
)


@pytest.fixture(autouse=True)
def stores(settings, tmp_path):
    """Every store root in a folder of this test, so the files found are exactly the test's."""
    settings.VAR_DIR = tmp_path / "var"
    settings.MODEL_STORE = tmp_path / "models"
    settings.DATASET_STORE = tmp_path / "datasets"
    crypto._keys.clear()
    yield tmp_path
    crypto._keys.clear()


@pytest.fixture(params=["plain", "encrypted"])
def at_rest(request, settings):
    if request.param == "encrypted":
        settings.TRELLIS_ENCRYPT_AT_REST = True
        settings.TRELLIS_MASTER_KEY = Fernet.generate_key().decode()
    return request.param


def _populate(org, *, trained: bool, tmp_path: Path) -> None:
    """A dataset (or a trained model with its dataset), answers, an article, a conversation with messages,
    finance documents with entities, mentions and trend buckets, and usage lines."""
    if trained:
        train_intent_model(org, tmp_path)
    else:
        dataset_upload(organisation=org, name="faq", task="classification", data=CSV, filename="faq.csv")
    cs.template_save(organisation=org, intent="card_arrival", body="Cards arrive within 5 working days.")
    cs.article_save(organisation=org, title="Parking", body="Every branch has free parking behind it.")
    conversation, _, _ = cs.conversation_start(bot=cs.bot_settings_for(organisation=org))
    cs.visitor_message_store(conversation=conversation, text="Where is my card?")
    cs.visitor_message_store(conversation=conversation, text="It has been a week, ann@example.com")
    owner = Membership.objects.for_org(org).get(role=Role.OWNER).user
    cs.note_add(organisation=org, conversation_id=conversation.pk, user=owner, text="Card sent on Monday")
    cs.saved_reply_save(organisation=org, title="Card", body="Cards arrive within 5 working days.")
    entity = fm_entities.entity_save(organisation=org, kind="company", name="Acme Corp", ticker="ACME")
    fm_documents.documents_ingest(
        organisation=org,
        items=[
            fm_documents.DocumentIn(text="Shares of Acme Corp rose 4% on earnings.", client_id="a1"),
            fm_documents.DocumentIn(text="Acme Corp cuts its forecast.", client_id="a2"),
            # a copy: it points at its original, so the import must insert the original first
            fm_documents.DocumentIn(text="RT @wire: ACME Corp cuts its forecast!", client_id="a3"),
        ],
    )
    ids = list(Document.objects.for_org(org).values_list("pk", flat=True))
    fm_entities.documents_tag(organisation=org, document_ids=ids)
    TrendBucket.all_tenants.create(
        organisation=org,
        dimension="entity",
        key=str(entity.pk),
        granularity="day",
        bucket_start="2026-12-01T00:00:00Z",
    )
    billing.usage_record(organisation=org, meter=Meter.PREDICTIONS, enforce=False, metadata={"job": 1})
    tenancy.api_key_create(organisation=org, created_by=owner, name="ci", scopes=["read"])


def _counts(org) -> dict[str, int]:
    return {label(m): rows_of(m, org.pk).count() for m in imported_models()}


def _files(org_id: int) -> dict[str, str]:
    out = {}
    for name in ("models", "datasets"):
        folder = Path(store_roots()[name]) / str(org_id)
        for p in sorted(folder.rglob("*")) if folder.exists() else []:
            if p.is_file():
                out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _export(client, org) -> bytes:
    started = client.post("/api/organisation/exports/")
    assert started.status_code == 201, started.content
    jobs.job_execute(job_id=started.json()["id"])  # the job, run here (default queue)
    listed = client.get("/api/organisation/exports/").json()["results"][0]
    assert listed["status"] == "succeeded", listed
    assert listed["download"] == f"/api/organisation/exports/{listed['id']}/download/"
    assert listed["expires_at"] and listed["size"] > 0
    response = client.get(listed["download"])
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    return b"".join(response.streaming_content) if response.streaming else response.content


def _import(client, data: bytes):
    upload = SimpleUploadedFile("org.zip", data, content_type="application/zip")
    return client.post("/api/organisation/import/", {"archive": upload}, format="multipart")


def test_products_declare_every_table_they_own():
    assert undeclared_models() == []


def test_round_trip_into_a_fresh_organisation(make_org, user_client, stores, at_rest):
    old, owner = make_org("Acme Support")
    _populate(old, trained=True, tmp_path=stores)
    old_files = _files(old.pk)
    before = model_predict(
        organisation=old, version_id=ModelVersion.objects.for_org(old).get().pk, texts=TEXTS
    )

    data = _export(user_client(owner), old)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
        rows = zf.read("rows/customer_service.Message.jsonl").decode()
        keys = zf.read("rows/tenancy.ApiKey.jsonl") + zf.read("rows/customer_service.Conversation.jsonl")
    assert manifest["format"] == "trellis.organisation-export" and manifest["version"] == 1
    assert manifest["organisation"]["name"] == "Acme Support"
    assert manifest["rows"]["customer_service.Message"] == Message.objects.for_org(old).count() >= 3
    assert manifest["rows"]["billing.UsageEvent"] >= 1 and "privacy.OrganisationKey" not in manifest["rows"]
    assert {m["path"] for m in manifest["members"]} | {"manifest.json"} == names
    assert "ann@example.com" in rows  # the customer's own data stays in their export
    assert b'"prefix"' in keys and b"token_hash" not in keys and b"secret_hash" not in keys
    artifacts = [n for n in names if n.startswith("files/models/customer_service/intent/v1/")]
    assert artifacts and not any(
        crypto.is_encrypted(zipfile.ZipFile(io.BytesIO(data)).read(n)) for n in artifacts
    )
    archive_file = next((Path(store_roots()["exports"]) / str(old.pk)).glob("org-export-job*.zip"))
    assert crypto.is_encrypted(archive_file.read_bytes()) == (at_rest == "encrypted")

    new, new_owner = make_org("Acme Again")
    answer = _import(user_client(new_owner), data)
    assert answer.status_code == 201, answer.content
    assert "tenancy.ApiKey" in answer.json()["not_imported"]

    assert _counts(new) == _counts(old)
    assert _counts(new)["finance_monitor.Mention"] >= 2 and _counts(new)["customer_service.ArticleChunk"] >= 1
    conversations = set(Conversation.objects.for_org(new).values_list("pk", flat=True))
    assert conversations.isdisjoint(Conversation.objects.for_org(old).values_list("pk", flat=True))
    messages = Message.objects.for_org(new).select_related("conversation")
    assert {m.conversation_id for m in messages} == conversations
    assert all(m.conversation.organisation_id == new.pk for m in messages)
    assert sorted(m.text for m in messages) == sorted(
        Message.objects.for_org(old).values_list("text", flat=True)
    )
    note = InternalNote.objects.for_org(new).get()  # an operator's note, on the new conversation
    assert note.conversation_id in conversations and note.author is None  # members are not imported
    for mention in Mention.objects.for_org(new).select_related("document", "entity"):
        assert mention.document.organisation_id == new.pk and mention.entity.organisation_id == new.pk
    copy = Document.objects.for_org(new).select_related("duplicate_of").get(duplicate_of__isnull=False)
    assert copy.duplicate_of.organisation_id == new.pk and copy.duplicate_of.client_id == "a2"
    assert copy.duplicate_of.copies == 1
    new_entity = Entity.objects.for_org(new).get()
    assert TrendBucket.objects.for_org(new).get().key == str(new_entity.pk)
    old_bot, new_bot = cs.bot_settings_for(organisation=old), cs.bot_settings_for(organisation=new)
    assert new_bot.widget_key != old_bot.widget_key  # a public key names one organisation

    version = ModelVersion.objects.for_org(new).get()
    assert Path(version.artifact_path).is_relative_to(Path(store_roots()["models"]) / str(new.pk))
    assert version.dataset.organisation_id == new.pk and version.training_job_id is None
    after = model_predict(organisation=new, version_id=version.pk, texts=TEXTS)
    assert [p["label"] for p in after["predictions"]] == [p["label"] for p in before["predictions"]]
    for a, b in zip(after["predictions"], before["predictions"], strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-5)
    dataset = Dataset.objects.for_org(new).get()
    folder = dataset_dir(organisation_id=new.pk, dataset_id=dataset.pk)
    assert Path(dataset.path) == folder / "rows.json" and (folder / "report.csv").is_file()
    assert dataset_rows(dataset=dataset)["train"]

    new_files = _files(new.pk)
    assert len(new_files) == len(old_files) and _files(old.pk) == old_files
    sealed = [
        crypto.is_encrypted((Path(store_roots()["models"]) / str(new.pk) / p).read_bytes())
        for p in new_files
        if not p.split("/")[0].isdigit()
    ]
    assert sealed and all(s == (at_rest == "encrypted") for s in sealed)

    # Tenant isolation: the old organisation reaches none of the new one's rows.
    old_client = user_client(owner)
    assert old_client.get(f"/api/models/{version.pk}/").status_code == 404
    assert old_client.get(f"/api/datasets/{dataset.pk}/").status_code == 404
    assert (
        old_client.post(f"/api/models/{version.pk}/predict", {"texts": TEXTS}, format="json").status_code
        == 404
    )

    exported = AuditEvent.objects.for_org(old).get(action=Action.ORG_EXPORT)
    imported = AuditEvent.objects.for_org(new).get(action=Action.ORG_IMPORT)
    assert exported.actor_email == owner.email and imported.actor_email == new_owner.email
    assert imported.details["source"] == {"id": old.pk, "name": "Acme Support"}
    assert organisation_data(organisation=new)  # a second import is refused
    again = _import(user_client(new_owner), data)
    assert again.status_code == 409 and "already holds data" in again.json()["error"]["message"]


# --- hostile and foreign archives ------------------------------------------------------------------------


@pytest.fixture
def archive_bytes(make_org, user_client, stores):
    """A real archive of a small organisation (no training), and a new empty organisation's owner."""
    old, owner = make_org()
    _populate(old, trained=False, tmp_path=stores)
    data = _export(user_client(owner), old)
    new, new_owner = make_org()
    return data, new, new_owner


def _rebuild(data: bytes, *, change=None, extra=(), manifest_change=None, drop_manifest=False) -> bytes:
    """The archive rewritten: ``change(name, bytes)`` per member, ``extra`` (ZipInfo|name, bytes) added."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == "manifest.json":
                if drop_manifest:
                    continue
                manifest = json.loads(body)
                if manifest_change:
                    manifest_change(manifest)
                body = json.dumps(manifest).encode()
            elif change:
                body = change(info.filename, body)
            dst.writestr(info.filename, body)
        for name, body in extra:
            dst.writestr(name, body)
    return out.getvalue()


def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _add_listed(path: str, body: bytes):
    def change(manifest):
        manifest["members"].append(
            {"path": path, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        )

    return change


def _forged(data: bytes, member: str, old: bytes, new: bytes) -> bytes:
    """``member`` with ``old`` replaced by ``new``, and its checksum in the manifest updated to match."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        body = zf.read(member)
    assert old in body
    body = body.replace(old, new)

    def manifest_change(manifest):
        for entry in manifest["members"]:
            if entry["path"] == member:
                entry["sha256"] = hashlib.sha256(body).hexdigest()

    return _rebuild(data, change=lambda n, b: body if n == member else b, manifest_change=manifest_change)


def _other_tenants_folder(data: bytes) -> bytes:
    """A dataset row pointed at another organisation's files (a path on this server, not a portable one)."""
    return _forged(data, "rows/registry.Dataset.jsonl", b'"trellis-store:datasets/', b'"/srv/datasets/1/x/')


def _foreign_table(manifest):
    manifest["tables"].append("stockpicker.Portfolio")
    manifest["rows"]["stockpicker.Portfolio"] = 1
    _add_listed("rows/stockpicker.Portfolio.jsonl", b'{"id": 1}\n')(manifest)


HOSTILE = {
    "not a zip": (lambda d: b"PK\x03\x04 this is not a zip", "not a zip file"),
    "no manifest": (lambda d: _rebuild(d, drop_manifest=True), "no manifest"),
    "other format": (
        lambda d: _rebuild(d, manifest_change=lambda m: m.update(format="x")),
        "unknown manifest",
    ),
    "newer version": (
        lambda d: _rebuild(d, manifest_change=lambda m: m.update(version=2)),
        "format version 2",
    ),
    "tampered rows": (
        lambda d: _rebuild(d, change=lambda n, b: b.replace(b"Acme", b"Evil") if "Document" in n else b),
        "checksum",
    ),
    "traversal": (lambda d: _rebuild(d, extra=[("files/models/../../../x", b"x")]), "leaves the archive"),
    "parent name": (lambda d: _rebuild(d, extra=[("../../x", b"x")]), "leaves the archive"),
    "absolute": (lambda d: _rebuild(d, extra=[("/etc/cron.d/x", b"x")]), "leaves the archive"),
    "symlink": (
        lambda d: _rebuild(d, extra=[(_symlink("files/models/link"), b"/etc/passwd")]),
        "symbolic link",
    ),
    "unlisted member": (
        lambda d: _rebuild(d, extra=[("files/models/extra.bin", b"x")]),
        "not in its manifest",
    ),
    "listed elsewhere": (
        lambda d: _rebuild(
            d, manifest_change=_add_listed("elsewhere/x", b"x"), extra=[("elsewhere/x", b"x")]
        ),
        "which no archive holds",
    ),
    "server path in a row": (_other_tenants_folder, "names a file outside the archive (path)"),
    "foreign product": (
        lambda d: _rebuild(
            d, manifest_change=_foreign_table, extra=[("rows/stockpicker.Portfolio.jsonl", b'{"id": 1}\n')]
        ),
        "products not installed here (stockpicker)",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archives_are_refused_and_nothing_is_written(case, archive_bytes, user_client, stores):
    data, new, new_owner = archive_bytes
    make, words = HOSTILE[case]
    answer = _import(user_client(new_owner), make(data))
    assert answer.status_code == 400, answer.content
    assert words in answer.json()["error"]["message"]
    assert organisation_data(organisation=new) == [] and _files(new.pk) == {}
    assert not (stores / "x").exists() and not AuditEvent.objects.for_org(new).filter(
        action=Action.ORG_IMPORT
    )


def test_zip_bomb_is_refused_before_it_is_extracted(archive_bytes, user_client, settings):
    data, new, new_owner = archive_bytes
    settings.IMPORT_MAX_BYTES = 5_000_000
    bomb = b"\0" * 6_000_000  # 6 MB of zeros: a few KB compressed
    body = _rebuild(
        data,
        manifest_change=_add_listed("files/models/bomb.bin", bomb),
        extra=[("files/models/bomb.bin", bomb)],
    )
    assert len(body) < len(data) + 100_000
    answer = _import(user_client(new_owner), body)
    assert answer.status_code == 400 and "bytes once uncompressed" in answer.json()["error"]["message"]
    assert _files(new.pk) == {} and organisation_data(organisation=new) == []


def test_a_header_that_lies_about_the_size_is_refused(archive_bytes, user_client):
    """A member whose header claims fewer bytes than it holds stops at the declared size (CRC fails)."""
    data, new, new_owner = archive_bytes
    name, raw = b"rows/finance_monitor.Document.jsonl", bytearray(data)
    entry = raw.find(b"PK\x01\x02")  # the central directory: the name sits 46 bytes into each entry
    while raw[entry + 46 : entry + 46 + len(name)] != name:
        entry = raw.find(b"PK\x01\x02", entry + 4)
        assert entry > 0
    raw[entry + 24 : entry + 28] = (10).to_bytes(4, "little")  # its uncompressed size, now 10 bytes
    answer = _import(user_client(new_owner), bytes(raw))
    assert answer.status_code == 400, answer.content
    assert organisation_data(organisation=new) == []


def test_an_organisation_with_data_is_refused(archive_bytes, user_client, make_org):
    data, new, new_owner = archive_bytes
    cs.template_save(organisation=new, intent="hello", body="Hello!")
    answer = _import(user_client(new_owner), data)
    assert (
        answer.status_code == 409 and "customer_service.AnswerTemplate" in answer.json()["error"]["message"]
    )
    assert cs.bot_settings_for(organisation=new)  # a settings row made on first visit is not "data"


def test_stored_records_over_the_plan_are_refused_with_402(archive_bytes, user_client):
    data, new, new_owner = archive_bytes
    plan = Plan.objects.create(
        code="tiny", name="Tiny", is_public=False, requests_per_minute=100, max_stored_records=3, max_models=3
    )
    Subscription.objects.filter(organisation=new).update(plan=plan)
    answer = _import(user_client(new_owner), data)
    assert answer.status_code == 402, answer.content
    error = answer.json()["error"]
    assert error["details"]["meter"] == "stored_records" and "stored records" in error["message"]
    assert organisation_data(organisation=new) == [] and _files(new.pk) == {}


# --- who may --------------------------------------------------------------------------------------------


def test_only_owners_signed_in_may_export_or_import(archive_bytes, make_member, user_client, api, make_key):
    data, new, new_owner = archive_bytes
    job = user_client(new_owner).post("/api/organisation/exports/").json()["id"]
    _, secret = make_key(new, scopes=["read", "admin", "train", "predict"])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    clients = [user_client(make_member(new, role)) for role in (Role.ADMIN, Role.OPERATOR, Role.VIEWER)]
    for client in [*clients, api]:
        assert client.post("/api/organisation/exports/").status_code == 403
        assert client.get("/api/organisation/exports/").status_code == 403
        assert client.get(f"/api/organisation/exports/{job}/download/").status_code == 403
        assert _import(client, data).status_code == 403
    assert organisation_data(organisation=new) == []
    assert jobs_of(new) == 1


def jobs_of(org) -> int:
    from core.jobs.models import TrainingJob

    return TrainingJob.objects.for_org(org).filter(kind="organisation.export").count()


def test_another_organisations_export_is_not_found(archive_bytes, make_org, user_client):
    data, new, new_owner = archive_bytes
    job = user_client(new_owner).post("/api/organisation/exports/").json()["id"]
    jobs.job_execute(job_id=job)
    _, stranger = make_org()
    assert user_client(stranger).get(f"/api/organisation/exports/{job}/download/").status_code == 404
    assert user_client(new_owner).get(f"/api/organisation/exports/{job}/download/").status_code == 200


def test_archives_expire(archive_bytes, make_org, user_client, settings):
    from datetime import timedelta

    from django.utils import timezone

    data, new, new_owner = archive_bytes
    client = user_client(new_owner)
    job = client.post("/api/organisation/exports/").json()["id"]
    jobs.job_execute(job_id=job)
    assert exports_sweep() == 0
    later = timezone.now() + timedelta(days=settings.EXPORT_ARCHIVE_DAYS, minutes=1)
    assert exports_sweep(now=later) == 2  # this one and the fixture's (of the other organisation)
    gone = client.get(f"/api/organisation/exports/{job}/download/")
    assert gone.status_code == 404 and "expired" in gone.json()["error"]["message"]
    assert client.get("/api/organisation/exports/").json()["results"][0]["download"] is None


def test_privacy_page_exports_and_imports(archive_bytes, make_org):
    data, new, new_owner = archive_bytes
    web = Client()
    assert (
        web.post("/accounts/login/", {"username": new_owner.email, "password": PASSWORD}).status_code == 302
    )
    page = web.get("/organisation/privacy/")
    assert b'id="import-organisation"' in page.content and b'id="export-organisation"' in page.content
    bad = web.post(
        "/organisation/privacy/", {"action": "import", "archive": SimpleUploadedFile("a.zip", b"no")}
    )
    assert bad.status_code == 400 and b"not a zip file" in bad.content
    done = web.post(
        "/organisation/privacy/", {"action": "import", "archive": SimpleUploadedFile("a.zip", data)}
    )
    assert done.status_code == 200 and b'id="imported"' in done.content
    page = web.get("/organisation/privacy/")
    assert b'id="import-organisation"' not in page.content  # it holds data now
    assert web.post("/organisation/privacy/", {"action": "export"}).status_code == 302
    assert b"queued" in web.get("/organisation/privacy/").content


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_export_job_runs_on_a_real_worker(make_org, user_client, stores, settings):
    """The kind is registered in the worker process and runs from the default queue."""
    from core.jobs.models import TrainingJob
    from tests.worker import celery_worker, wait_for

    org, owner = make_org()
    dataset_upload(organisation=org, name="faq", task="classification", data=CSV, filename="faq.csv")
    client = user_client(owner)
    env = {
        "TRELLIS_VAR_DIR": str(settings.VAR_DIR),
        "MODEL_STORE": str(settings.MODEL_STORE),
        "DATASET_STORE": str(settings.DATASET_STORE),
    }
    with celery_worker(queues="default", extra_env=env) as proc:
        job = client.post("/api/organisation/exports/").json()["id"]
        wait_for(
            lambda: TrainingJob.objects.for_org(org).get(pk=job).status in ("succeeded", "failed"),
            timeout=120,
            proc=proc,
        )
    done = TrainingJob.objects.for_org(org).get(pk=job)
    assert done.status == "succeeded" and done.queue == "default", done.error
    response = client.get(f"/api/organisation/exports/{job}/download/")
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["rows"]["registry.Dataset"] == 1
    assert {m["path"].rsplit("/", 1)[-1] for m in manifest["members"] if m["path"].startswith("files/")} == {
        "rows.json",
        "report.csv",
    }


def test_a_store_folder_is_an_organisations_id_only_in_ascii_digits(settings, tmp_path):
    """The first folder below a dataset store is the old dataset's id only when it is ASCII digits:
    "²".isdigit() is true but int("²") fails, which made such an archive fail the import with a 500."""
    from core.privacy.archive import STORE_PREFIX
    from core.privacy.importing import _Remap

    settings.DATASET_STORE = str(tmp_path / "datasets")
    remap = _Remap(organisation_id=5)
    remap.ids["registry.Dataset"] = {7: 70}
    assert remap.store_parts("datasets", ["7", "train.csv"]) == ["70", "train.csv"]
    assert remap.store_parts("datasets", ["8", "train.csv"]) is None  # an orphan: a dataset not re-created
    for odd in ("²", "٣", "７"):  # superscript, Arabic-Indic and fullwidth digits: names, not ids
        assert odd.isdigit()
        assert remap.store_parts("datasets", [odd, "train.csv"]) == [odd, "train.csv"]
    stored = remap.value(f"{STORE_PREFIX}datasets/²/a.csv")  # a row's path: below the new organisation's
    assert stored == str(tmp_path / "datasets" / "5" / "²" / "a.csv")
