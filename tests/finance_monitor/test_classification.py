"""Classification of documents by the organisation's topic and sentiment models: the default models trained
from the shipped sets (not counted as training jobs), batches with trends and the documents_classified
meter, documents waiting for a model, and a batch that fails half-way keeping nothing."""

import asyncio
import copy
import importlib
import json
import threading
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from core.billing.models import Plan, UsageEvent, plan_limits_write
from core.errors import Conflict, InvalidInput, QuotaExceeded
from core.jobs import services as jobs
from core.jobs.models import JobStatus, TrainingJob
from core.ml import textforms
from core.ml.ood import OutOfScope
from core.products import text_form_name
from core.realtime import org_group
from core.registry import services as registry
from core.registry.describe import version_sentences
from core.registry.models import Dataset, ModelVersion, VersionStatus
from core.registry.services.common import active_version, artifact_key
from core.registry.services.serving import model_cache
from core.tenancy.models import Organisation
from finance_monitor.links import LINKS_AS_WORD, model_text
from finance_monitor.models import Document, TrendBucket
from finance_monitor.services import classification, corrections, defaults, trends
from finance_monitor.services import documents as docs

TEXTS = [
    "Fed signals it will keep raising interest rates to fight inflation",
    "Apple shares jump after record iPhone sales beat estimates",
    "Oil prices slump as OPEC output rises",
    "Bank of England holds rates steady",
    "Tesla stock falls after disappointing deliveries",
]


def install_defaults(organisation, settings, rows: int = 40) -> list[int]:
    """The fast default models, trained here on small slices of the shipped sets; the active version ids
    (their follow-up fine-tune is tested on its own)."""
    settings.FM_DEFAULT_TRAIN_ROWS = rows
    settings.FM_DEFAULT_FINE_TUNE = False
    queued = defaults.monitor_defaults_install(organisation=organisation)
    for job in queued:
        jobs.job_execute(job_id=job.pk)
    done = TrainingJob.objects.for_org(organisation).filter(pk__in=[j.pk for j in queued]).order_by("pk")
    assert all(j.status == JobStatus.SUCCEEDED for j in done), [j.error for j in done]
    return [j.result["model_version"] for j in done]


def push(organisation, texts=TEXTS):
    return docs.documents_ingest(
        organisation=organisation, items=[docs.DocumentIn(text=t) for t in texts]
    ).created


def receive(layer, channel: str, timeout: float = 5.0) -> dict:
    async def one() -> dict:
        return await asyncio.wait_for(layer.receive(channel), timeout)

    return async_to_sync(one)()


def fresh(organisation):
    return Organisation.objects.get(pk=organisation.pk)


@pytest.fixture
def monitor_org(make_org, settings):
    organisation, owner = make_org()
    install_defaults(organisation, settings)
    return organisation, owner


def test_shipped_rows_are_capped_per_label_with_every_label_kept():
    full = defaults.default_rows(task="sentiment")
    assert len(full) == 9362 and {label for _, label in full} == {"positive", "neutral", "negative"}
    topic = defaults.default_rows(task="topic", cap=200)
    assert 190 <= len(topic) <= 220 and len({label for _, label in topic}) == 20
    assert topic == defaults.default_rows(task="topic", cap=200)  # seeded


def test_the_models_read_a_link_as_one_word():
    assert model_text("$ALLY - Ally Financial pulls outlook https://t.co/G9Zdi1boy5") == (
        "$ALLY - Ally Financial pulls outlook link"
    )
    two = model_text("see:http://x.io/a?b=1 and  https://t.co/q\n now")
    assert two == "see: link and link now"
    assert model_text("http://t.co/only") == "link"
    assert model_text("No link in  this one") == "No link in this one"
    # the monitor's model tasks declare the form: training and every prediction read texts in it
    assert textforms.text_form(LINKS_AS_WORD.name) is model_text
    assert {text_form_name("finance_monitor", task) for task in ("topic", "sentiment")} == {"links-as-word"}
    rows = defaults.default_rows(task="sentiment")  # shipped as they came: training puts them in the form
    assert sum("https://t.co/" in text for text, _ in rows) > 1000


@pytest.mark.django_db
def test_classification_reads_the_title_and_text_with_links_as_words(monitor_org, make_key, key_client):
    organisation, _ = monitor_org
    raw = "Tesla stock falls after disappointing deliveries https://t.co/Ab3xYz9QwE https://t.co/K2"
    (doc_id,) = docs.documents_ingest(
        organisation=organisation, items=[docs.DocumentIn(title="Tesla slides", text=raw)]
    ).created
    run = classification.documents_classify_pending(organisation=organisation)
    document = Document.objects.for_org(organisation).get(pk=doc_id)
    assert document.text == raw  # stored as it came
    given = classification.document_text(document)
    assert given == f"Tesla slides. {raw}"
    read = "Tesla slides. Tesla stock falls after disappointing deliveries link link"
    assert model_text(given) == read
    sentiment = ModelVersion.objects.for_org(organisation).get(pk=run.models["sentiment"])
    assert sentiment.manifest["hyperparameters"]["text_form"] == "links-as-word"  # recorded with the version
    said = 'It reads every text with each web link as the word "link", as it was trained.'
    assert said in version_sentences(sentiment)  # the model page says so
    model = registry.predictor_for(version=sentiment)

    def distance(probabilities: dict[str, float]) -> float:
        return max(abs(probabilities[k] - v) for k, v in document.sentiment_probabilities.items())

    def answer(predictor, text: str) -> dict[str, float]:
        (prediction,) = predictor.predict([text])
        return prediction.probabilities

    assert distance(answer(model, read)) < 1e-4 and distance(answer(model, given)) < 1e-4
    as_given = copy.copy(model)  # the same weights reading texts as given: another answer to the raw text
    as_given.form = None
    assert distance(answer(as_given, read)) < 1e-4 and distance(answer(as_given, given)) > 1e-3
    # the platform's own path to the version (its predict endpoint) reads the raw text in the form too
    client = key_client(make_key(organisation, scopes=["predict"])[1])
    response = client.post(f"/api/models/{sentiment.pk}/predict", {"texts": [given]}, format="json")
    assert response.status_code == 200, response.content
    assert distance(response.json()["predictions"][0]["probabilities"]) < 1e-4
    # the default dataset is stored as shipped (links and all); a retrain with corrections stores its rows in
    # the form, where the correction replaces the row it corrects
    shipped = [row for split in registry.dataset_rows(dataset=sentiment.dataset).values() for row in split]
    assert sum("https://" in text for text, _ in shipped) > 5
    shipped.append((given, "negative"))  # the document itself, as an old dataset may hold it
    stored = registry.dataset_from_rows(
        organisation=organisation, name="old form", task="classification", rows=shipped, source="test"
    )
    ModelVersion.objects.for_org(organisation).filter(pk=sentiment.pk).update(dataset=stored)
    corrections.document_correct(organisation=organisation, document_id=doc_id, sentiment="positive")
    (job,) = corrections.corrections_retrain(organisation=organisation, tasks=("sentiment",))
    dataset = Dataset.objects.for_org(organisation).get(pk=job.params["dataset_id"])
    rows = [row for split in registry.dataset_rows(dataset=dataset).values() for row in split]
    assert (read, "positive") in rows and (read, "negative") not in rows
    assert not any("http" in text for text, _ in rows)
    assert len(rows) == len({model_text(text) for text, _ in shipped})  # the correction replaced


@pytest.mark.django_db
def test_pending_documents_are_classified_in_batches_counted_in_trends_and_charged(
    monitor_org, make_org, django_capture_on_commit_callbacks, monkeypatch
):
    organisation, _ = monitor_org
    other, _ = make_org()
    ids = push(organisation)
    # copies (same normalised text) are stored and counted as ingested, never classified nor counted in trends
    copies = docs.documents_ingest(
        organisation=organisation,
        items=[docs.DocumentIn(text=f"RT @desk{i}: {TEXTS[1].upper()}!") for i in range(3)]
        + [docs.DocumentIn(text=TEXTS[2] + " https://t.co/x")],
    ).copies
    assert len(copies) == 4 and classification.pending_documents(organisation=organisation).count() == 5
    assert [d.copies for d in Document.objects.for_org(organisation).filter(pk__in=ids).order_by("pk")] == [
        0,
        3,
        1,
        0,
        0,
    ]
    theirs = push(other, ["Fed signals it will keep raising interest rates"])
    layer = get_channel_layer()  # the dashboards' live feed: one fm.documents frame per batch, after commit
    mine, their_feed = async_to_sync(layer.new_channel)(), async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(org_group(organisation.pk, "documents"), mine)
    async_to_sync(layer.group_add)(org_group(other.pk, "documents"), their_feed)
    scored = []  # the models' out-of-scope scores, which nothing here reads: not computed
    real_in_scope = OutOfScope.in_scope
    monkeypatch.setattr(OutOfScope, "in_scope", lambda *a: scored.append(1) or real_in_scope(*a))
    with django_capture_on_commit_callbacks(execute=True):
        run = classification.documents_classify_pending(organisation=organisation, batch_size=2)
    assert scored == []
    versions = [ModelVersion.objects.for_org(organisation).get(pk=pk) for pk in run.models.values()]
    models = [registry.predictor_for(version=v) for v in versions]
    assert len(models) == 2 and all(m.ood is not None for m in models)  # they have one to skip
    frames = [receive(layer, mine) for _ in range(3)]
    assert {f["event"] for f in frames} == {"fm.documents"}
    live = [d for f in frames for d in f["data"]["documents"]]
    assert sorted(d["id"] for d in live) == sorted(ids) and all(d["sentiment"] and d["topic"] for d in live)
    assert run.classified == 5 and run.batches == 3 and run.pending == 0 and run.stopped == ""
    assert run.seconds["topic"] > 0 and run.seconds["sentiment"] > 0
    for d in Document.objects.for_org(organisation).filter(pk__in=ids):
        assert d.topic and d.classified_at is not None and 0 < d.topic_probability <= 1
        p = d.sentiment_probabilities
        assert abs(sum(p.values()) - 1) < 1e-4 and d.sentiment == max(p, key=p.get)
        assert abs(d.score - (p["positive"] - p["negative"])) < 1e-6
    overall = TrendBucket.objects.for_org(organisation).get(dimension="all", granularity="day")
    assert overall.volume == 5 and overall.negative + overall.neutral + overall.positive == 5
    charged = UsageEvent.objects.for_org(organisation).filter(meter="documents_classified")
    assert sum(e.quantity for e in charged) == 5
    assert (
        not Document.objects.for_org(organisation).filter(pk__in=copies, classified_at__isnull=False).exists()
    )
    ingested_meter = UsageEvent.objects.for_org(organisation).filter(meter="documents_ingested")
    assert sum(e.quantity for e in ingested_meter) == 9
    with pytest.raises(
        InvalidInput, match="copy of document"
    ):  # a copy is not corrected apart from its original
        corrections.document_correct(organisation=organisation, document_id=copies[0], sentiment="negative")
    with pytest.raises(asyncio.TimeoutError):  # nothing reached the other organisation's feed
        receive(layer, their_feed, timeout=0.3)
    # nothing left: a second run classifies and charges nothing; the other tenant's document is untouched
    assert classification.documents_classify_pending(organisation=organisation).classified == 0
    assert sum(e.quantity for e in charged.all()) == 5
    assert Document.objects.for_org(other).get(pk=theirs[0]).classified_at is None
    # an analyst corrects one; retraining feeds it to the platform's retrain-from-feedback
    active = ModelVersion.objects.for_org(organisation).get(
        app="finance_monitor", task="sentiment", status="active"
    )
    corrected = corrections.document_correct(
        organisation=organisation, document_id=ids[4], sentiment="negative"
    )
    assert corrected.corrected_sentiment == "negative" and corrected.model_answer["topic"] == corrected.topic
    assert classification.documents_classify_pending(organisation=organisation).classified == 0  # not redone
    (job,) = corrections.corrections_retrain(organisation=organisation, tasks=("sentiment",))
    assert job.kind == "ml.train" and job.params["task"] == "sentiment"
    dataset = Dataset.objects.for_org(organisation).get(pk=job.params["dataset_id"])
    assert dataset.name == Dataset.objects.for_org(organisation).get(pk=active.dataset_id).name
    rows = [row for split in registry.dataset_rows(dataset=dataset).values() for row in split]
    assert (TEXTS[4], "negative") in rows
    jobs.job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and "promoted" in job.result  # the promotion rule decided


@pytest.mark.django_db
def test_a_batch_that_fails_half_way_keeps_nothing_and_the_next_run_counts_once(monitor_org, monkeypatch):
    organisation, _ = monitor_org
    push(organisation)
    counted = []

    def dies_after_counting(**kwargs):  # the batch's trends are written, then the worker is lost
        counted.append(trends.documents_classified(**kwargs))
        raise RuntimeError("worker lost")

    monkeypatch.setattr(classification, "documents_classified", dies_after_counting)
    with pytest.raises(RuntimeError):
        classification.documents_classify_pending(organisation=organisation, batch_size=5)
    assert len(counted[0]) == 5  # counted inside the batch's transaction, which rolled back
    assert classification.pending_documents(organisation=organisation).count() == 5
    assert not TrendBucket.objects.for_org(organisation).filter(volume__gt=0).exists()
    assert not UsageEvent.objects.for_org(organisation).filter(meter="documents_classified").exists()
    monkeypatch.undo()
    # the next run (here with 3 documents left in the month's quota) takes the same rows and counts them once
    plan_limits_write(Plan.objects.get(code="trial").pk, {"documents_classified": 3})
    organisation = fresh(organisation)  # as each run of the task loads it (the plan is cached on it)
    run = classification.documents_classify_pending(organisation=organisation, batch_size=2)
    assert run.classified == 3 and run.pending == 2 and "documents classified" in run.stopped
    assert TrendBucket.objects.for_org(organisation).get(dimension="all", granularity="hour").volume == 3
    charged = UsageEvent.objects.for_org(organisation).filter(meter="documents_classified")
    assert sum(e.quantity for e in charged) == 3
    assert classification.documents_classify_pending(organisation=organisation).classified == 0
    plan_limits_write(Plan.objects.get(code="trial").pk, {"documents_classified": 5_000})
    organisation = fresh(organisation)
    assert classification.documents_classify_pending(organisation=organisation).classified == 2
    assert TrendBucket.objects.for_org(organisation).get(dimension="all", granularity="hour").volume == 5


@pytest.mark.django_db(transaction=True)
def test_the_encoder_runs_outside_the_batch_lock_and_an_overtaken_run_records_none(monitor_org, monkeypatch):
    """While the models predict, a push counting a near copy on a document of the batch goes through (another
    connection: it would wait on the rows' lock if the encoder ran inside the batch's transaction), and when
    another run records the same documents first, this run records and charges nothing of them."""
    organisation, _ = monitor_org
    ids = push(organisation)
    real_predict, seen = classification._predict, {}

    def push_a_copy() -> None:
        try:
            seen["copies"] = docs.documents_ingest(
                organisation=organisation, items=[docs.DocumentIn(text=f"RT @desk: {TEXTS[1].upper()}!")]
            ).copies
        finally:
            connection.close()

    def predict_while_others_work(versions, texts, run):
        if seen:  # the other run's own prediction
            return real_predict(versions, texts, run)
        seen["predicting"] = True
        pusher = threading.Thread(target=push_a_copy)
        pusher.start()
        pusher.join(timeout=20)
        seen["pushed"] = not pusher.is_alive()
        seen["other"] = classification.documents_classify_pending(organisation=organisation)
        return real_predict(versions, texts, run)

    monkeypatch.setattr(classification, "_predict", predict_while_others_work)
    run = classification.documents_classify_pending(organisation=organisation)
    assert seen["pushed"] and len(seen["copies"]) == 1  # the push did not wait for the encoder
    assert Document.objects.for_org(organisation).get(pk=ids[1]).copies == 1
    assert seen["other"].classified == 5 and run.classified == 0
    assert run.stopped == "another run classified these documents first"
    assert TrendBucket.objects.for_org(organisation).get(dimension="all", granularity="hour").volume == 5
    charged = UsageEvent.objects.for_org(organisation).filter(meter="documents_classified")
    assert sum(e.quantity for e in charged) == 5


@pytest.mark.django_db
def test_the_default_datasets_are_shipped_rows_not_counted_in_the_stored_records(make_org, settings):
    """A trial's stored records are the organisation's own: the monitor's default datasets (4,000 rows each
    in production, made without asking) neither count in them nor are refused by them."""
    from core.billing.services import meter_used

    organisation, _ = make_org()
    settings.FM_DEFAULT_TRAIN_ROWS = 40
    plan_limits_write(Plan.objects.get(code="trial").pk, {"stored_records": 30})  # less than one default set
    organisation = fresh(organisation)
    queued = defaults.monitor_defaults_install(organisation=organisation)
    made = Dataset.objects.for_org(organisation).filter(pk__in=[j.params["dataset_id"] for j in queued])
    assert len(queued) == 2 and made.count() == 2 and all(d.shipped and d.row_count >= 35 for d in made)
    assert meter_used(organisation=organisation, meter="stored_records") == 0
    for job in queued:  # cancelled: installing again makes two more shipped sets, still not counted
        jobs.job_cancel(organisation=organisation, job_id=job.pk)
    assert len(defaults.monitor_defaults_install(organisation=organisation)) == 2
    assert meter_used(organisation=organisation, meter="stored_records") == 0
    own = [(f"my own text number {i}", "positive" if i % 2 else "negative") for i in range(31)]
    with pytest.raises(QuotaExceeded):  # the organisation's own rows are still counted and capped
        registry.dataset_from_rows(organisation=organisation, name="mine", task="classification", rows=own)
    mine = registry.dataset_from_rows(
        organisation=organisation, name="mine", task="classification", rows=own[:30]
    )
    assert meter_used(organisation=organisation, meter="stored_records") == 30
    # a version trained on shipped rows is the product's too: not counted in the plan's models; one trained
    # on the organisation's own rows is
    for version, dataset in enumerate((made.first(), mine), start=1):
        ModelVersion.all_tenants.create(
            organisation=organisation,
            app="finance_monitor",
            task=f"t{version}",
            version=1,
            status=VersionStatus.READY,
            dataset=dataset,
            artifact_path="",
        )
    assert meter_used(organisation=organisation, meter="models") == 1


@pytest.mark.django_db
def test_without_models_documents_wait_then_defaults_train_uncounted_and_classify_them(make_org, settings):
    organisation, _ = make_org()
    settings.FM_DEFAULT_TRAIN_ROWS = 40
    settings.FM_DEFAULT_MODELS_ON_FIRST_USE = False
    push(organisation, TEXTS[:2])
    run = classification.documents_classify_pending(organisation=organisation)
    assert run.classified == 0 and run.pending == 2 and "no active" in run.stopped
    assert not TrainingJob.objects.for_org(organisation).exists()
    settings.FM_DEFAULT_MODELS_ON_FIRST_USE = True
    classification.documents_classify_pending(organisation=organisation)
    classification.documents_classify_pending(organisation=organisation)  # queued already: not twice
    queued = list(TrainingJob.objects.for_org(organisation).filter(kind="finance_monitor.train_default"))
    assert len(queued) == 2 and {j.queue for j in queued} == {"train"}
    assert classification.pending_documents(organisation=organisation).count() == 2
    for job in queued:
        jobs.job_execute(job_id=job.pk)
    # platform jobs: both models active, no training job charged, the shipped sets stored as datasets
    versions = {v.task: v for v in ModelVersion.objects.for_org(organisation).filter(app="finance_monitor")}
    assert versions["topic"].status == versions["sentiment"].status == VersionStatus.ACTIVE
    assert set(versions["sentiment"].labels) == {"positive", "neutral", "negative"}
    assert len(versions["topic"].labels) == 20
    assert not UsageEvent.objects.for_org(organisation).filter(meter="training_jobs").exists()
    assert Dataset.objects.for_org(organisation).filter(source_filename__contains="(MIT)").count() == 2
    with pytest.raises(Conflict, match="active or their default training is under way"):
        defaults.monitor_defaults_install(organisation=organisation)
    assert classification.documents_classify_pending(organisation=organisation).classified == 2


@pytest.mark.django_db
def test_a_fast_default_queues_its_calibrated_fine_tune_as_an_uncounted_default_job(make_org, settings):
    organisation, _ = make_org()
    settings.FM_DEFAULT_TRAIN_ROWS = 40
    settings.FM_DEFAULT_FINE_TUNE = True
    fast = next(
        j
        for j in defaults.monitor_defaults_install(organisation=organisation)
        if j.params["task"] == "sentiment"
    )
    assert fast.params["config"] == {"method": "head", "lexical": True}
    assert fast.params["fine_tune"] == defaults.FINE_TUNED_CONFIG
    jobs.job_execute(job_id=fast.pk)
    fast.refresh_from_db()
    assert fast.status == JobStatus.SUCCEEDED, fast.error
    follow = TrainingJob.objects.for_org(organisation).get(pk=fast.result["fine_tune"]["job"])
    assert follow.kind == defaults.JOB_KIND and follow.params["fine_tune"] is None
    assert follow.params["config"] == defaults.FINE_TUNED_CONFIG
    assert follow.params["dataset_id"] == fast.params["dataset_id"]
    jobs.job_execute(job_id=follow.pk)
    follow.refresh_from_db()
    assert follow.status == JobStatus.SUCCEEDED, follow.error
    assert "fine_tune" not in follow.result  # no third job
    version = ModelVersion.objects.for_org(organisation).get(pk=follow.result["model_version"])
    assert version.method == "full" and version.manifest["calibration"]["temperature"] > 0
    assert version.manifest["hyperparameters"]["calibrate"] is True
    assert not UsageEvent.objects.for_org(organisation).filter(meter="training_jobs").exists()


@pytest.mark.django_db
def test_batches_run_one_bf16_pass_where_both_models_passed_their_bf16_gates(
    monitor_org, settings, monkeypatch
):
    organisation, _ = monitor_org
    settings.ML_BF16 = "on"  # as where bf16 pays (an AMX CPU), whatever this machine is
    versions = [
        active_version(organisation, classification.APP, task)
        for task in (classification.TOPIC_TASK, classification.SENTIMENT_TASK)
    ]
    for v in versions:  # as when training measured bf16 within half a point of float
        ModelVersion.all_tenants.filter(pk=v.pk).update(quantization={**v.quantization, "use_bf16": True})
    passes: list[dict] = []
    real = classification.predict_shared
    monkeypatch.setattr(classification, "predict_shared", lambda **kw: passes.append(kw) or real(**kw))
    ids = push(organisation)
    run = classification.documents_classify_pending(organisation=organisation, batch_size=10)
    assert run.classified == 5 and run.seconds["encoder"] > 0
    assert [(p["bf16"], p["float_encoder"]) for p in passes] == [(True, False)]
    assert all((artifact_key(v), "bf16") in model_cache() for v in versions)
    floats = [registry.predictor_for(version=v) for v in versions]
    stored = Document.objects.for_org(organisation).filter(pk__in=ids).order_by("pk")
    reference = floats[1].predict_proba([d.text for d in stored])
    for document, expected in zip(stored, reference, strict=True):
        got = [document.sentiment_probabilities[label] for label in floats[1].labels]
        assert max(abs(a - b) for a, b in zip(got, expected.tolist(), strict=True)) < 0.05
    # one model without a passed bf16 gate: no bf16 pass (one shared pass as the int8 gates decide)
    ModelVersion.all_tenants.filter(pk=versions[0].pk).update(
        quantization={**versions[0].quantization, "use_bf16": False}
    )
    push(organisation, ["Nvidia raises its revenue forecast"])
    classification.documents_classify_pending(organisation=organisation, batch_size=10)
    assert passes[-1]["bf16"] is False


@pytest.mark.django_db
def test_versions_trained_on_links_as_words_before_forms_were_recorded_get_theirs(monitor_org, settings):
    """Migration 0011: the 2026-12-07 code trained the monitor's versions on rows with links as the word
    "link" and recorded no form; those versions get theirs, in the manifest file (encrypted again if it was)
    and row, and a version trained on raw links keeps reading texts as given."""
    from cryptography.fernet import Fernet
    from django.apps import apps as django_apps

    from core.privacy import crypto

    organisation, _ = monitor_org
    migration = importlib.import_module("finance_monitor.migrations.0011_record_links_text_form")
    settings.TRELLIS_ENCRYPT_AT_REST, settings.TRELLIS_MASTER_KEY = True, Fernet.generate_key().decode()
    raw = defaults.default_rows(task="topic", cap=60)
    formed = [(model_text(text), label) for text, label in defaults.default_rows(task="sentiment", cap=40)]
    assert any("https://" in text for text, _ in raw) and not any("https://" in text for text, _ in formed)
    versions = {}
    for task, rows in (("sentiment", formed), ("topic", raw)):
        version = active_version(organisation, "finance_monitor", task)
        dataset = registry.dataset_from_rows(
            organisation=organisation, name=task, task="classification", rows=rows, source="test"
        )
        path = Path(version.artifact_path) / "manifest.json"
        manifest = json.loads(path.read_text())
        del manifest["hyperparameters"]["text_form"]  # as that code stored it: sealed, in the old form
        path.write_bytes(crypto.encrypt_for(organisation.pk, json.dumps(manifest).encode()))
        ModelVersion.all_tenants.filter(pk=version.pk).update(dataset=dataset, manifest=manifest)
        versions[task] = version
    migration.record(django_apps, None)
    crypto.forget_plaintext(f"{organisation.pk}:")
    for version in versions.values():
        model_cache().evict(artifact_key(version))
    for task, form in (("sentiment", "links-as-word"), ("topic", "")):
        version = ModelVersion.objects.for_org(organisation).get(pk=versions[task].pk)
        sealed = (Path(version.artifact_path) / "manifest.json").read_bytes()
        assert crypto.is_encrypted(sealed)
        stored = json.loads(crypto.decrypt_for(organisation.pk, sealed))
        assert (
            stored["hyperparameters"].get("text_form", "")
            == form
            == version.manifest["hyperparameters"].get("text_form", "")
        )
        assert registry.predictor_for(version=version).text_form == form  # what serves reads it
