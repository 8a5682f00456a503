"""A new customer follows the chatbot's checklist in a real browser, from sign-up to a bot that answers:
sample data, Train (one fast-model job, run by a real Celery worker; the fine-tune is only offered), an answer
picked from the model's intents, and the model's try box."""

import re

import pytest
from playwright.sync_api import expect

from core.jobs.models import TrainingJob
from core.tenancy.models import Organisation
from customer_service.models import AnswerTemplate
from tests.worker import celery_worker

pytestmark = [pytest.mark.e2e, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PASSWORD = "e2e-Trellis-pass-42"


def _step(page, key):
    return page.locator(f'#checklist li[data-step="{key}"]')


def test_a_new_organisation_follows_the_checklist_to_a_working_bot(live_server, page):
    base = live_server.url
    page.goto(f"{base}/signup/")
    page.fill("#id_organisation_name", "Onboarding Org")
    page.fill("#id_email", "onboarding.owner@example.com")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Create organisation").click()
    page.wait_for_url(f"{base}/dashboard/")
    organisation = Organisation.objects.get(name="Onboarding Org")

    # the dashboard names the next step and leads to the checklist
    next_step = page.locator('[data-next-step="Customer service"]')
    expect(next_step).to_contain_text("Start from sample data")
    expect(next_step).to_contain_text("0 of 5 done")
    next_step.get_by_role("link", name="Go to the checklist").click()
    page.wait_for_url(f"{base}/customer-service/#checklist")
    expect(page.locator("#checklist h2")).to_have_text("Set up your bot: 0 of 5 done")

    # 1. sample data
    _step(page, "data").get_by_role("button", name="Load the sample data").click()
    expect(page.locator(".flash.success")).to_contain_text("Sample data loaded: 160 questions in 8 intents")
    expect(_step(page, "data")).to_have_attribute("data-done", "1")
    expect(_step(page, "train")).to_have_attribute("data-done", "0")

    # 2. train: the fast model only, run by a real worker; the job page follows it in sentences
    with celery_worker(queues="train") as proc:
        _step(page, "train").get_by_role("button", name="Train on sample-banking77").click()
        page.wait_for_url(re.compile(r"/jobs/\d+/$"))
        sentence = page.locator("#job-sentence")
        expect(sentence).to_contain_text("the intent model on")
        expect(sentence).to_contain_text(
            re.compile(r"Finished: \d+% of held-out questions answered right \(macro-F1 \d\.\d\d"),
            timeout=180_000,
        )
        assert proc.poll() is None
    expect(sentence).to_contain_text("It is now the active model.")
    expect(page.locator("#fine-tune")).to_be_visible()  # offered, not started
    assert TrainingJob.objects.for_org(organisation).count() == 1
    expect(page.locator("#job-technical")).not_to_have_attribute("open", "")
    model_url = page.locator("#job-model").get_attribute("href")

    # 3. an answer, its intent picked from the model's intents
    page.goto(f"{base}/customer-service/#checklist")
    expect(_step(page, "train")).to_have_attribute("data-done", "1")
    _step(page, "answers").get_by_role("link", name="Write answers").click()
    expect(page.locator("section#answers")).to_be_visible()
    expect(page.locator("section#knowledge")).to_be_hidden()
    picker = page.locator("#template-form select[name=intent]")
    expect(picker.locator("option")).to_have_count(8)
    picker.select_option("atm_support")
    page.fill("#template-form [name=body]", "Our ATMs are free for the first 5 withdrawals a month.")
    page.locator("#template-form").get_by_role("button", name="Save answer").click()
    page.wait_for_url(f"{base}/customer-service/#answers")
    expect(page.locator(".flash.success")).to_contain_text("Answer for 'atm_support' saved.")
    body = AnswerTemplate.objects.for_org(organisation).get(intent="atm_support").body
    assert body == "Our ATMs are free for the first 5 withdrawals a month."

    # 4. try it, on the model's page
    page.goto(f"{base}{model_url}")
    expect(page.locator("#model-summary")).to_contain_text("held-out questions")
    page.fill("#try-text", "I lost my card, someone might have stolen it")
    page.locator("#try-form").get_by_role("button", name="Try it").click(timeout=90_000)  # loads the model
    expect(page.locator("#try-result")).to_contain_text(re.compile(r"Most likely “[a-z ]+” \(\d+%\)"))
    expect(page.locator("#try-result tr")).to_have_count(4)  # the header and the top three

    page.goto(f"{base}/customer-service/")
    expect(page.locator("#checklist h2")).to_have_text("Set up your bot: 4 of 5 done")
    expect(_step(page, "embed")).to_have_attribute("data-done", "0")
    page.goto(f"{base}/dashboard/")
    expect(page.locator('[data-next-step="Customer service"]')).to_contain_text("Embed the widget")
