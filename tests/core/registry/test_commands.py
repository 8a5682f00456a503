"""The command line: train, predict, evaluate, models and create_org, checked as a data scientist uses them.

One model is trained (the default config, from the shipped BANKING77 slice with its own header and test
file) and shared by the module's tests; only the tests of refusals and of the split train again.
"""

import csv
import io
import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from core.jobs.models import TrainingJob
from core.registry import services
from core.registry.management.commands import train as train_command
from core.registry.models import Dataset, ModelVersion
from core.registry.services.training import DEFAULT_TRAIN_CONFIG, TRAIN_KEYS
from core.tenancy.models import Membership, Organisation, Role

DATA = Path(__file__).resolve().parents[3] / "data" / "banking77"
APP = "customer_service"
PASSWORD = "correct-horse-battery-9"


def _slice_rows(name: str) -> list[dict]:
    with (DATA / name).open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def trained(django_db_setup, django_db_blocker):
    """An organisation with one model trained by ``manage.py train`` with no training setting, from the
    shipped slice as it is (``text,category``) and its test slice as the test split. Made in a transaction
    the module's tests run inside (each in its own savepoint) and that is rolled back after them."""
    from django.db import transaction

    from tests.conftest import _ensure_plans

    with django_db_blocker.unblock(), transaction.atomic():
        _ensure_plans()
        org, _ = services_sign_up("CLI fixture", "cli-fixture@example.com")
        out, err = StringIO(), StringIO()
        call_command(
            "train",
            org=org.slug,
            app=APP,
            task="intent",
            file=DATA / "train_slice.csv",
            label_column="category",
            test_file=DATA / "test_slice.csv",
            stdout=out,
            stderr=err,
        )
        result = json.loads(out.getvalue())
        version = ModelVersion.objects.for_org(org).get(pk=result["model_version"])
        yield {"org": org, "version": version, "result": result, "stderr": err.getvalue()}
        transaction.set_rollback(True)


def services_sign_up(name: str, email: str):
    from core.tenancy import services as tenancy

    return tenancy.organisation_sign_up(organisation_name=name, email=email, password=PASSWORD)


def _predict(trained, monkeypatch=None, stdin: str | None = None, **options) -> tuple[str, str]:
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", StringIO(stdin))
    out, err = StringIO(), StringIO()
    call_command("predict", org=trained["org"].slug, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


@pytest.mark.django_db
def test_train_with_no_setting_reproduces_the_apis_default_model(trained):
    version, result = trained["version"], trained["result"]
    job = TrainingJob.objects.for_org(trained["org"]).get(pk=result["job"])
    assert job.params["config"] == DEFAULT_TRAIN_CONFIG == {"method": "head", "lexical": True}
    assert version.method == "head" and "lexical" in version.manifest  # the TF-IDF blend is in the model
    assert result["status"] == "succeeded" and result["promoted"] and result["version"] == 1


@pytest.mark.django_db
def test_train_maps_columns_and_takes_its_own_test_file(trained):
    """The slice's header is ``text,category``: it trains through --label-column; the test file is the test
    split (the upload is split 90/10/0), and the model is evaluated on exactly its rows."""
    dataset = trained["version"].dataset
    test_rows = len(_slice_rows("test_slice.csv"))
    assert dataset.split_counts["test"] == dataset.split_counts["test_file"] == test_rows
    assert dataset.split_counts["train"] + dataset.split_counts["validation"] == len(
        _slice_rows("train_slice.csv")
    )
    assert (
        trained["version"].metrics["n"] == test_rows and trained["version"].metrics["evaluated_on"] == "test"
    )
    assert trained["result"]["evaluated_on"] == "test"


@pytest.mark.django_db
def test_train_prints_progress(trained):
    lines = trained["stderr"].splitlines()
    progress = [line for line in lines if line.startswith("progress ")]
    assert any("%" in line and "Evaluated on the test split" in line for line in progress), lines
    assert any("train " in line and "test 80" in line for line in lines)  # the split, before training


def test_help_shows_every_api_setting_with_its_default():
    help_text = train_command.Command().create_parser("manage.py", "train").format_help()
    flat = " ".join(help_text.split())
    for key in TRAIN_KEYS:
        assert f"--{key.replace('_', '-')}" in help_text
    assert "--batch-size BATCH_SIZE rows per step (lora, full) (default: 32)" in flat
    assert "(default: head when no setting is given, else lora)" in flat
    assert "--text-column TEXT_COLUMN the file's column (or JSONL field) of texts (default: text)" in flat
    for option in ("--search-trials", "--search-time-budget-s", "--follow-up", "--split", "--test-file"):
        assert option in help_text


@pytest.mark.django_db
def test_fine_tune_settings_with_head_are_refused_alike_by_cli_and_api(make_org, user_client, tmp_path):
    org, owner = make_org()
    with pytest.raises(CommandError, match="epochs only apply to method lora or full"):
        call_command(
            "train",
            org=org.slug,
            app=APP,
            task="intent",
            file=DATA / "train_slice.csv",
            label_column="category",
            method="head",
            epochs=3,
            stderr=StringIO(),
        )
    with pytest.raises(CommandError, match="search varies fine-tuning settings"):
        call_command(
            "train", org=org.slug, app=APP, task="intent", file=DATA / "train_slice.csv", search_trials=2
        )
    assert not Dataset.objects.for_org(org).exists()  # refused before anything was stored
    dataset = services.dataset_upload(
        organisation=org,
        name="d",
        task="classification",
        data=(DATA / "train_slice.csv").read_bytes(),
        columns=("text", "category"),
    )
    response = user_client(owner).post(
        "/api/models/train/",
        {"dataset": dataset.pk, "app": APP, "task": "intent", "config": {"method": "head", "epochs": 3}},
        format="json",
    )
    assert response.status_code == 400
    assert "epochs only apply to method lora or full" in response.json()["error"]["message"]
    assert not TrainingJob.objects.for_org(org).exists()


@pytest.mark.django_db
def test_the_split_is_chosen_and_checked_in_the_dataset_service(make_org, tmp_path):
    org, _ = make_org()
    data = (DATA / "train_slice.csv").read_bytes()
    kwargs = {"organisation": org, "name": "d", "task": "classification", "data": data}
    every = services.dataset_upload(**kwargs, columns=("text", "category"), split="100/0/0")
    assert every.split_counts == {"train": 160, "validation": 0, "test": 0, "scrubbed": 0}
    own = services.dataset_upload(**kwargs, columns=("text", "category"), split="70/20/10")
    assert own.split_counts["validation"] > own.split_counts["test"] > 0
    for split in ("80/30/10", "0/50/50", "80-10-10"):
        with pytest.raises(CommandError, match="three percentages"):
            call_command(
                "train", org=org.slug, app=APP, task="intent", file=DATA / "train_slice.csv", split=split
            )
    with pytest.raises(CommandError, match="test file is the test split"):
        call_command(
            "train",
            org=org.slug,
            app=APP,
            task="intent",
            file=DATA / "train_slice.csv",
            label_column="category",
            test_file=DATA / "test_slice.csv",
            split="80/10/10",
        )
    with pytest.raises(CommandError, match="missing required column 'label'"):
        call_command("train", org=org.slug, app=APP, task="intent", file=DATA / "train_slice.csv")
    assert Dataset.objects.for_org(org).count() == 2


@pytest.mark.django_db
def test_training_on_every_row_evaluates_on_the_training_rows(make_org):
    org, _ = make_org()
    out = StringIO()
    call_command(
        "train",
        org=org.slug,
        app=APP,
        task="intent",
        file=DATA / "test_slice.csv",
        label_column="category",
        split="100/0/0",
        method="head",
        stdout=out,
        stderr=StringIO(),
    )
    result = json.loads(out.getvalue())
    assert result["status"] == "succeeded" and result["evaluated_on"] == "train"
    assert ModelVersion.objects.for_org(org).get().metrics["n"] == 80


@pytest.mark.django_db
def test_predict_reads_csv_with_ids_and_multi_line_texts(trained, tmp_path):
    path = tmp_path / "in.csv"
    path.write_text(
        'id,text\nA7,"I still have not received\nmy card"\nB2,\nC9,where is my new card?\n', encoding="utf-8"
    )
    out, err = _predict(trained, input=path, format="csv", top_k=3, app=APP, task="intent")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == ["A7", "B2", "C9"]  # one row per input row, in order
    assert rows[0]["label"] == "card_arrival" and rows[1]["error"] == "empty text" and not rows[1]["label"]
    assert len(rows[0]["confidence"].split(".")[1]) <= 4 and len(rows[0]["top_k"].split()) == 3
    version = trained["version"]
    serving = "int8" if version.quantized else "float"
    assert rows[0]["model_version"] == str(version.pk) and rows[0]["serving"] == serving
    assert f"model version {version.pk}" in err and f"serving {serving}" in err and "1 empty text" in err


@pytest.mark.django_db
def test_predict_plain_lines_keep_blank_lines_in_place(trained, monkeypatch):
    out, err = _predict(
        trained,
        monkeypatch,
        stdin="I still have not received my card\n\nwhere is my new card?\n",
        app=APP,
        task="intent",
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["id"] for line in lines] == ["1", "2", "3"]
    assert lines[1] == {
        "id": "2",
        "error": "empty text",
        **{k: lines[0][k] for k in ("model_version", "version", "serving")},
    }
    assert set(lines[0]) == {
        "id",
        "label",
        "confidence",
        "model_version",
        "version",
        "serving",
    }  # no 77 probabilities
    assert lines[0]["label"] == "card_arrival" and 0 < lines[0]["confidence"] <= 1
    assert "warning: 1 empty text" in err


@pytest.mark.django_db
def test_predict_reads_jsonl_with_an_id_field(trained, tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text('{"ref": 41, "body": "where is my card?"}\n{"ref": 42, "body": "my card is lost"}\n')
    out, _ = _predict(
        trained, input=path, id_column="ref", text_column="body", top_k=2, version_id=trained["version"].pk
    )
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["id"] for line in lines] == ["41", "42"] and len(lines[0]["top_k"]) == 2
    assert lines[0]["top_k"][0]["label"] == lines[0]["label"]


@pytest.mark.django_db
def test_evaluate_scores_a_version_with_trainings_metric_code(trained):
    out, err = StringIO(), StringIO()
    call_command(
        "evaluate",
        org=trained["org"].slug,
        app=APP,
        task="intent",
        file=DATA / "test_slice.csv",
        label_column="category",
        stdout=out,
        stderr=err,
    )
    result = json.loads(out.getvalue())
    version = trained["version"]
    assert result["model_version"] == version.pk and result["metrics"]["n"] == 80
    assert set(result["metrics"]["per_class"]) == set(version.labels)
    tolerance = 0.0125 if version.quantized else 1e-4  # training scored the float model on these rows
    assert abs(result["metrics"]["accuracy"] - version.metrics["accuracy"]) <= tolerance
    assert "accuracy" in err.getvalue() and f"serving {result['serving']}" in err.getvalue()
    table = StringIO()
    call_command(
        "evaluate",
        org=trained["org"].slug,
        version_id=version.pk,
        file=DATA / "test_slice.csv",
        label_column="category",
        format="text",
        stdout=table,
        stderr=StringIO(),
    )
    assert "card_arrival" in table.getvalue() and "macro-F1" in table.getvalue()


@pytest.mark.django_db
def test_evaluate_refuses_labels_the_model_does_not_know(trained, tmp_path):
    path = tmp_path / "eval.csv"
    path.write_text("text,label\nwhere is my card,card_arrival\nhello,greeting\n")
    with pytest.raises(CommandError, match="Labels not known to version .*greeting"):
        call_command("evaluate", org=trained["org"].slug, app=APP, task="intent", file=path)
    with pytest.raises(CommandError, match="--version-id, or --app and --task"):
        call_command("evaluate", org=trained["org"].slug, file=path)


@pytest.mark.django_db
def test_models_lists_versions(trained):
    out = StringIO()
    call_command("models", org=trained["org"].slug, format="jsonl", stdout=out)
    (row,) = [json.loads(line) for line in out.getvalue().splitlines()]
    version = trained["version"]
    assert row["id"] == version.pk and row["app"] == APP and row["task"] == "intent" and row["version"] == 1
    assert row["status"] == "active" and row["active"] is True and row["method"] == "head"
    assert row["metrics"]["accuracy"] == round(version.metrics["accuracy"], 4) and "created" in row
    table = StringIO()
    call_command("models", org=trained["org"].slug, stdout=table)
    header, line = table.getvalue().splitlines()
    assert header.split()[:6] == ["id", "app", "task", "version", "status", "active"]
    assert line.split()[:6] == [str(version.pk), APP, "intent", "1", "active", "yes"]


@pytest.mark.django_db
def test_create_org_makes_an_organisation_with_its_owner(db, monkeypatch):
    from tests.conftest import _ensure_plans

    _ensure_plans()
    out = StringIO()
    monkeypatch.setattr("sys.stdin", StringIO(PASSWORD + "\n"))
    call_command(
        "create_org", name="Acme Ltd", owner_email="Owner@Acme.example", stdout=out, stderr=StringIO()
    )
    slug = out.getvalue().strip()
    org = Organisation.objects.get(slug=slug)
    assert org.name == "Acme Ltd"
    membership = Membership.objects.for_org(org).get()
    assert membership.role == Role.OWNER and membership.user.email == "owner@acme.example"
    assert membership.user.check_password(PASSWORD)
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_org", name="Again", owner_email="owner@acme.example", password=PASSWORD)
    with pytest.raises(CommandError, match="name is required"):
        call_command("create_org", name=" ", owner_email="new@acme.example", password=PASSWORD)


@pytest.mark.django_db
def test_commands_refuse_bad_input(make_org, tmp_path):
    org, _ = make_org()
    with pytest.raises(CommandError, match="No organisation"):
        call_command("predict", org="nope", app=APP, task="intent")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(CommandError, match="empty"):
        call_command(
            "train", org=org.slug, app=APP, task="intent", file=empty, method="head", stderr=StringIO()
        )
    texts = tmp_path / "texts.txt"
    texts.write_text("hello\n")
    with pytest.raises(CommandError, match="No active model"):
        call_command("predict", org=org.slug, app=APP, task="intent", input=texts)
    with pytest.raises(CommandError, match="--version-id, or --app and --task"):
        call_command("predict", org=org.slug, input=texts)
    with pytest.raises(CommandError, match="the following arguments are required: --app"):
        call_command("train", org=org.slug, task="intent", file=empty)


@pytest.mark.django_db
def test_predict_csv_output_has_the_formula_guard(trained, tmp_path):
    """Ids (and labels) come from the input and the training data: a cell a spreadsheet would run as a
    formula is written with a leading ' (core.ml.spreadsheet.csv_cell, as the batch predictions' CSV)."""
    path = tmp_path / "in.csv"
    path.write_text(
        'id,text\n"=HYPERLINK(""http://x.test"",""y"")",where is my card?\n'
        "-5,my card is lost\n@SUM,hi\nok,hey\n",
        encoding="utf-8",
    )
    out, _ = _predict(trained, input=path, format="csv", app=APP, task="intent")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["id"] for r in rows] == ['\'=HYPERLINK("http://x.test","y")', "'-5", "'@SUM", "ok"]
    assert all(r["label"] and r["label"][0] not in "=+-@" for r in rows)
    jsonl, _ = _predict(trained, input=path, app=APP, task="intent")  # JSON is not a spreadsheet: as given
    assert json.loads(jsonl.splitlines()[1])["id"] == "-5"
