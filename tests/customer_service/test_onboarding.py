"""Self-serve onboarding of the chatbot: the checklist's steps follow the organisation's data, the sample data
loads once (metered like an upload) into its own organisation only, and the model page's try box answers
only for the organisation's own models."""

import pytest
from django.test import Client

from core.billing.meters import stock_count
from core.jobs import services as jobs
from core.registry import services as registry
from core.registry.models import Dataset
from core.tenancy.models import Role
from customer_service import selectors, services
from customer_service.models import AnswerTemplate
from customer_service.services import onboarding


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _states(organisation) -> dict[str, bool]:
    return {step.key: step.done for step in selectors.onboarding_checklist(organisation=organisation)}


def _train_sample(organisation) -> int:
    dataset = onboarding.sample_dataset(organisation=organisation)
    job = registry.model_train_start(
        organisation=organisation, dataset_id=dataset.pk, app="customer_service", task="intent"
    )
    jobs.job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    return job.result["model_version"]


@pytest.mark.django_db
def test_checklist_steps_follow_the_data_from_sign_up_to_an_embedded_bot(make_org):
    organisation, owner = make_org()
    page = _browser(owner)
    assert _states(organisation) == dict.fromkeys(["data", "train", "answers", "try", "embed"], False)
    dashboard = page.get("/dashboard/").content.decode()
    assert "Next step in Customer service:</strong>\nStart from sample data" in dashboard
    assert "(0 of 5 done)" in dashboard

    assert page.post("/customer-service/sample/")["Location"] == "/customer-service/#checklist"
    assert _states(organisation) == {
        "data": True,
        "train": False,
        "answers": True,
        "try": False,
        "embed": False,
    }
    setup = page.get("/customer-service/").content.decode()
    sample = onboarding.sample_dataset(organisation=organisation)
    assert f'action="/datasets/{sample.pk}/train/"' in setup and "Train on sample-banking77" in setup
    # before a model: the answer form suggests the dataset's intents
    assert 'list="intent-suggestions"' in setup and '<option value="card_arrival">' in setup
    assert (
        "Next step in Customer service:</strong>\nTrain the intent model"
        in page.get("/dashboard/").content.decode()
    )

    _train_sample(organisation)
    states = _states(organisation)
    assert states["train"] and states["answers"] and not states["try"]
    steps = {s.key: s for s in selectors.onboarding_checklist(organisation=organisation)}
    assert steps["answers"].detail == "8 of 8 intents have an answer."
    AnswerTemplate.objects.for_org(organisation).filter(intent="atm_support").delete()
    setup = page.get("/customer-service/?intent=exchange_rate").content.decode()
    picker = setup.split('<select name="intent" id="id_intent" required>')[1].split("</select>")[0]
    assert picker.index("atm_support (no answer yet)") < picker.index("card_arrival (has an answer")
    assert picker.count("<option") == 8 and '<option value="exchange_rate" selected>' in picker
    AnswerTemplate.objects.for_org(organisation).update(active=False)
    assert not _states(organisation)["answers"]  # answers switched off answer nothing
    AnswerTemplate.objects.for_org(organisation).update(active=True)

    bot = services.bot_settings_for(organisation=organisation)
    services.conversation_start(bot=bot, page="http://testserver/customer-service/try/")
    assert _states(organisation)["try"] and not _states(organisation)["embed"]  # Trellis's try page
    services.conversation_start(bot=bot, page="https://shop.example.com/help")
    assert all(_states(organisation).values())
    assert "Next step in Customer service" not in page.get("/dashboard/").content.decode()


@pytest.mark.django_db
def test_sample_data_loads_once_metered_and_only_into_its_own_organisation(make_org, make_member):
    organisation, owner = make_org()
    other, other_owner = make_org()
    services.template_save(organisation=organisation, intent="change_pin", body="Our own PIN answer.")
    first = onboarding.sample_data_load(organisation=organisation)
    assert first.dataset_created and first.answers_added == 7  # the tenant's own answer is kept
    assert first.dataset.row_count == 160 and len(first.dataset.labels) == 8
    records = stock_count(organisation=organisation, meter="stored_records")
    assert records >= 160

    again = _browser(owner).post("/customer-service/sample/", follow=True)
    assert "already loaded; nothing was added" in again.content.decode()
    assert Dataset.objects.for_org(organisation).count() == 1
    assert AnswerTemplate.objects.for_org(organisation).count() == 8
    assert AnswerTemplate.objects.for_org(organisation).get(intent="change_pin").body == "Our own PIN answer."
    assert stock_count(organisation=organisation, meter="stored_records") == records

    # nothing reached the other organisation, and its own load is its own
    assert not Dataset.objects.for_org(other).exists() and not AnswerTemplate.objects.for_org(other).exists()
    assert stock_count(organisation=other, meter="stored_records") == 0
    _browser(other_owner).post("/customer-service/sample/")
    assert Dataset.objects.for_org(other).get().pk != first.dataset.pk
    assert Dataset.objects.for_org(organisation).count() == 1

    viewer = make_member(organisation, Role.VIEWER)
    assert _browser(viewer).post("/customer-service/sample/").status_code == 403
    assert _browser(viewer).get("/customer-service/sample/").status_code == 405


@pytest.mark.django_db
def test_try_box_answers_in_words_for_its_own_organisation_only(make_org, make_member):
    from core.billing import services as billing
    from core.registry.models import ModelVersion

    organisation, owner = make_org()
    other, other_owner = make_org()
    onboarding.sample_data_load(organisation=organisation)
    version_id = _train_sample(organisation)
    page = _browser(owner)
    html = page.get(f"/models/{version_id}/").content.decode()
    plain = html.split('<details id="model-technical">')[0]
    assert "held-out questions (kept aside, never trained on) it answered" in plain
    assert "In use now" in plain and 'id="try-form"' in plain
    for jargon in ("LoRA", "ECE", "int8", "macro-F1"):
        assert jargon not in plain, jargon
    assert "ECE" in html.split('<details id="model-technical">')[1]  # one click away

    assert not _states(organisation)["try"]
    tried = page.post(f"/models/{version_id}/try/", {"text": "My new card still has not arrived"})
    assert tried.status_code == 200
    html = tried.content.decode()
    assert "Most likely “card arrival” (" in html and html.count("<code>") >= 3
    assert billing.period_used(organisation=organisation, meter="predictions") == 1
    assert _states(organisation)["try"]  # the checklist's "try it" counts the model's try box

    # another organisation's model id: 404, nothing run or counted anywhere
    refused = _browser(other_owner).post(f"/models/{version_id}/try/", {"text": "card not arrived"})
    assert refused.status_code == 404
    assert billing.period_used(organisation=organisation, meter="predictions") == 1
    assert billing.period_used(organisation=other, meter="predictions") == 0

    empty = page.post(f"/models/{version_id}/try/", {"text": "   "})
    assert empty.status_code == 400 and "Type a text to try." in empty.content.decode()
    viewer = make_member(organisation, Role.VIEWER)
    assert _browser(viewer).post(f"/models/{version_id}/try/", {"text": "card"}).status_code == 403

    # a model that does not label texts says so instead of offering the box
    embedder = ModelVersion.all_tenants.create(
        organisation=organisation,
        app="customer_service",
        task="retrieval",
        version=1,
        kind="embedding",
        status="ready",
        method="contrastive",
        metrics={"mrr": 0.5, "recall@1": 0.4, "n": 20},
    )
    html = page.get(f"/models/{embedder.pk}/").content.decode()
    assert 'id="try-unavailable"' in html and "no labels to try" in html and 'id="try-form"' not in html
    refused = page.post(f"/models/{embedder.pk}/try/", {"text": "card"})
    assert refused.status_code == 400 and "no labels to try" in refused.content.decode()
    assert billing.period_used(organisation=organisation, meter="predictions") == 1


@pytest.mark.django_db
def test_another_products_default_datasets_are_not_the_chatbots_data(make_org, settings):
    """The finance monitor's default datasets (created by the platform for its own models) neither tick the
    chatbot's first step nor are offered as its intent training set; the customer's own upload is."""
    from finance_monitor.services import defaults  # the real product path that creates them

    organisation, owner = make_org()
    settings.FM_DEFAULT_TRAIN_ROWS = 40
    queued = defaults.monitor_defaults_install(organisation=organisation)
    ids = [job.params["dataset_id"] for job in queued]
    fm_datasets = Dataset.objects.for_org(organisation).filter(pk__in=ids)
    assert fm_datasets.count() == 2 and all(d.task == "classification" for d in fm_datasets)

    assert _states(organisation)["data"] is False
    assert selectors.dataset_intents(organisation=organisation) == []
    setup = _browser(owner).get("/customer-service/").content.decode()
    assert "Train on Finance monitor" not in setup and "/train/" not in setup

    mine = registry.dataset_from_rows(
        organisation=organisation,
        name="my-intents",
        task="classification",
        rows=[(f"where is my card {i}", "card_arrival") for i in range(6)]
        + [(f"close my account {i}", "terminate_account") for i in range(6)],
    )
    assert _states(organisation)["data"] is True
    assert selectors.dataset_intents(organisation=organisation) == ["card_arrival", "terminate_account"]
    setup = _browser(owner).get("/customer-service/").content.decode()
    assert f'action="/datasets/{mine.pk}/train/"' in setup and "Train on Finance monitor" not in setup
