"""The pages' Train starts the fast model only; its finished job page says how it did in a sentence and offers
the fine-tune, which costs a training job only when asked for (and once, however often it is clicked)."""

import re

import pytest
from django.test import Client

from core.billing import services as billing
from core.jobs import services as jobs
from core.jobs.describe import job_sentence
from core.jobs.models import JobStatus, TrainingJob
from core.registry.describe import train_job_sentence, version_sentences
from core.registry.models import ModelVersion
from tests.core.registry.test_registry import _csv, _upload
from tests.customer_service.conftest import banking_rows


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_train_button_spends_one_job_and_the_fine_tune_is_offered(make_org, user_client):
    org, owner = make_org()
    other_org, other_owner = make_org()
    dataset = _upload(user_client(owner), _csv(banking_rows("train_slice.csv"))).json()
    page = _browser(owner)
    response = page.post(
        f"/datasets/{dataset['id']}/train/", {"app": "customer_service", "task": "intent", "method": "auto"}
    )
    assert response.status_code == 302
    job = TrainingJob.objects.for_org(org).get()
    assert job.params["config"] == {"method": "head", "lexical": True} and job.params["follow_up"] is None
    assert billing.period_used(organisation=org, meter="training_jobs") == 1
    queued = page.get(f"/jobs/{job.pk}/").content.decode()
    rows = dataset["split_counts"]["train"]
    assert f"Next: training the intent model on {rows:,} questions." in queued

    jobs.job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED and "follow_up" not in job.result
    assert TrainingJob.objects.for_org(org).count() == 1  # nothing queued behind the user's back
    html = page.get(f"/jobs/{job.pk}/").content.decode()
    lead = re.search(r'id="job-sentence"[^>]*>([^<]+)<', html).group(1)
    percent, f1 = round(100 * job.result["accuracy"]), job.result["macro_f1"]
    assert lead == (
        f"Finished: {percent}% of held-out questions answered right (macro-F1 {f1:.2f}: the F1 of every label"
        " averaged, rare ones alike). It is now the active model."
    )
    assert 'id="job-model"' in html and "(its page has a box to try it)" in html  # a classifier: it has one
    before_details = html.split("<details")[0]
    assert "{&#x27;" not in before_details and "{'" not in before_details  # no raw dicts outside the detail
    assert 'id="fine-tune"' in html and "&quot;dataset_id&quot;" in html.split("<details")[1]

    # another organisation cannot start it, nor learn that it exists
    assert _browser(other_owner).post(f"/jobs/{job.pk}/fine-tune/").status_code == 404
    assert TrainingJob.objects.for_org(other_org).count() == 0

    started = page.post(f"/jobs/{job.pk}/fine-tune/")
    follow = TrainingJob.objects.for_org(org).exclude(pk=job.pk).get()
    assert started["Location"] == f"/jobs/{follow.pk}/"
    assert follow.params["config"] == {"method": "lora"} and follow.status == JobStatus.QUEUED
    again = page.post(f"/jobs/{job.pk}/fine-tune/")  # a second click: the same job, no second charge
    assert again["Location"] == f"/jobs/{follow.pk}/" and TrainingJob.objects.for_org(org).count() == 2
    assert billing.period_used(organisation=org, meter="training_jobs") == 2
    html = page.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="fine-tune"' not in html and f"job #{follow.pk}" in html
    assert (
        "Waiting for a free worker. Next: fine-tuning the intent model"
        in page.get(f"/jobs/{follow.pk}/").content.decode()
    )
    # the fine-tune's own page offers nothing more
    assert page.post(f"/jobs/{follow.pk}/fine-tune/").status_code == 302
    assert TrainingJob.objects.for_org(org).count() == 2


def test_a_running_fine_tune_says_its_epoch_and_a_failure_says_why():
    job = TrainingJob(
        kind="ml.train",
        status=JobStatus.RUNNING,
        params={"app": "customer_service", "task": "intent", "rows": 1200, "config": {"method": "lora"}},
        metrics={"step": 45, "total_steps": 120, "epoch": 1.5, "loss": 0.4, "eta_s": 40.2},
    )
    assert train_job_sentence(job) == (
        "Fine-tuning the intent model on 1,200 questions: epoch 2 of 4, about 40 s left."
    )
    job.metrics, job.message = {}, "Embedding training rows: 64/960"
    assert train_job_sentence(job) == (
        "Fine-tuning the intent model on 1,200 questions: embedding training rows: 64 of 960."
    )
    job.status, job.error = JobStatus.FAILED, "The dataset was deleted before training started."
    assert train_job_sentence(job) == (
        "Fine-tuning the intent model on 1,200 questions failed: "
        "The dataset was deleted before training started."
    )
    job.status, job.result = (
        JobStatus.SUCCEEDED,
        {
            "accuracy": 0.9375,
            "promoted": False,
            "promotion": "kept v3: 0.9500 >= 0.9375 accuracy on the same held-out rows",
        },
    )
    assert train_job_sentence(job) == (
        "Finished: 94% of held-out questions answered right. "
        "Version 3 stays active: it did as well or better on the same held-out questions."
    )


@pytest.mark.django_db
def test_the_jobs_list_says_each_job_in_a_sentence_and_shows_only_the_organisations(make_org):
    org, owner = make_org()
    other, _ = make_org()
    TrainingJob.all_tenants.create(
        organisation=org,
        kind="ml.train",
        status=JobStatus.FAILED,
        queue="train",
        params={"app": "customer_service", "task": "intent", "rows": 1200, "config": {"method": "head"}},
        error="The dataset was deleted before training started.",
    )
    TrainingJob.all_tenants.create(
        organisation=org, kind="usage.export", status=JobStatus.SUCCEEDED, queue="default", message="3 rows"
    )
    TrainingJob.all_tenants.create(
        organisation=other, kind="usage.export", status=JobStatus.RUNNING, queue="default", message="theirs"
    )
    cells = re.findall(r'<td class="message">([^<]*)</td>', _browser(owner).get("/jobs/").content.decode())
    assert cells == [
        "Finished: 3 rows.",
        "Training the intent model on 1,200 questions failed: "
        "The dataset was deleted before training started.",
    ]


def test_the_products_trainings_say_their_models_figure():
    """The finance monitor's default models and the recommender's: their jobs are said by core's describer of
    trained models, with the figure their kind reports (no "Finished: Done.")."""
    monitor = TrainingJob(
        kind="finance_monitor.train_default",
        app="finance_monitor",
        status=JobStatus.SUCCEEDED,
        message="Done",
        params={"app": "finance_monitor", "task": "topic", "rows": 4000, "config": {"method": "head"}},
        result={"model_version": 6, "version": 1, "accuracy": 0.8712, "macro_f1": 0.7049, "promoted": True},
    )
    assert job_sentence(monitor) == (
        "Finished: 87% of held-out posts answered right (macro-F1 0.70: the F1 of every label averaged, rare"
        " ones alike). It is now the active model."
    )
    monitor.status = JobStatus.QUEUED
    assert (
        job_sentence(monitor) == "Waiting for a free worker. Next: training the topic model on 4,000 posts."
    )
    recommender = TrainingJob(
        kind="recommender.train",
        app="recommender",
        status=JobStatus.SUCCEEDED,
        message="Done",
        params={"config": {"method": "ease"}, "task": "ranking"},  # its own job names the task it trains
        result={
            "model_version": 7,
            "version": 2,
            "ndcg@10": 0.31249,
            "hr@10": 0.5371,
            "recall@10": 0.5371,
            "promoted": True,
            "promotion": "beat v1: 0.3125 > 0.2010 ndcg@10",
        },
    )
    assert job_sentence(recommender) == (
        "Finished: NDCG@10 0.312 on held-out users; the item each chose next was in the top 10 for 54% of"
        " them. It replaced version 1, which it beat on the same held-out users."
    )
    recommender.status, recommender.metrics, recommender.message = JobStatus.RUNNING, {}, "Read 40 events"
    assert job_sentence(recommender) == "Training the ranking model: read 40 events."


@pytest.mark.django_db
def test_the_job_page_promises_a_try_box_only_where_the_model_page_has_one(make_org):
    org, owner = make_org()
    page = _browser(owner)
    said = {}
    for kind, app, task in (
        ("classifier", "finance_monitor", "topic"),
        ("recommender", "recommender", "ranking"),
    ):
        version = ModelVersion.all_tenants.create(
            organisation=org, app=app, task=task, version=1, kind=kind, status="active"
        )
        job = TrainingJob.all_tenants.create(
            organisation=org,
            kind="ml.train",
            status=JobStatus.SUCCEEDED,
            queue="train",
            params={"app": app, "task": task},
            result={"model_version": version.pk, "version": 1},
        )
        html = page.get(f"/jobs/{job.pk}/").content.decode()
        assert f'href="/models/{version.pk}/"' in html
        said[kind] = "box to try it" in html
        model_page = page.get(f"/models/{version.pk}/").content.decode()
        assert ('id="try-form"' in model_page) == said[kind]  # the job page says what the model page has
    assert said == {"classifier": True, "recommender": False}


def test_a_version_of_another_method_is_named_by_its_method():
    ranking = ModelVersion(app="recommender", task="ranking", version=1, kind="recommender", method="ease")
    assert version_sentences(ranking)[0] == "The ranking model, version 1: a model made with the ease method."
    ranking.method = ""
    assert version_sentences(ranking)[0] == "The ranking model, version 1: a trained model."


def test_only_a_product_with_a_threshold_page_is_sent_to_one():
    """Rough confidence figures: the chatbot's intent model points to its set-up page, which has the
    thresholds; the finance monitor's classifiers have no such page and do not promise one."""
    metrics = {"accuracy": 0.9, "n": 200, "ece": 0.12}
    intent = ModelVersion(app="customer_service", task="intent", version=1, method="head", metrics=metrics)
    assert "compare thresholds on the set-up page" in " ".join(version_sentences(intent))
    for task in ("topic", "sentiment"):
        model = ModelVersion(app="finance_monitor", task=task, version=1, method="head", metrics=metrics)
        said = " ".join(version_sentences(model))
        assert "off by 12 points" in said and "threshold" not in said and "set-up page" not in said
    calibrated = ModelVersion(
        app="customer_service", task="intent", version=2, method="head", metrics={**metrics, "ece": 0.02}
    )
    assert "can be trusted as they are" in " ".join(version_sentences(calibrated))
