"""The chatbot's set-up page in a real browser: each form posts to its own operation, a saved form comes
back as a success message on the page, and a refused one is shown again with its error and what was typed."""

import pytest
from playwright.sync_api import expect

from core.tenancy import services as tenancy
from customer_service import services
from customer_service.models import AnswerTemplate, Article

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "e2e-Trellis-pass-42"


def test_each_form_saves_on_its_own_and_a_refused_one_keeps_its_input(live_server, page):
    base = live_server.url
    organisation, owner = tenancy.organisation_sign_up(
        organisation_name="Setup Org", email="setup.owner@example.com", password=PASSWORD
    )
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", owner.email)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}/dashboard/")

    page.goto(f"{base}/customer-service/")
    template = page.locator("#template-form")
    template.locator("[name=intent]").fill("card_arrival")
    template.locator("[name=body]").fill("Cards arrive within 3 working days.")
    template.get_by_role("button", name="Save answer").click()
    page.wait_for_url(f"{base}/customer-service/")
    expect(page.locator(".flash.success")).to_contain_text("Answer for 'card_arrival' saved.")
    assert AnswerTemplate.objects.for_org(organisation).get().intent == "card_arrival"

    settings = page.locator("#settings-form")
    settings.locator("[name=bot_name]").fill("Ada")
    settings.locator("[name=allowed_origins]").fill("not a site")
    settings.get_by_role("button", name="Save settings").click()
    page.wait_for_url(f"{base}/customer-service/settings/")
    expect(page.locator("#settings-form")).to_contain_text("is not an origin")
    expect(page.locator("#settings-form [name=bot_name]")).to_have_value("Ada")  # what was typed stays
    assert services.bot_settings_for(organisation=organisation).bot_name == "Assistant"  # nothing saved

    article = page.locator("#article-form")
    article.locator("[name=title]").fill("Parking")
    article.locator("[name=body]").fill("Free parking behind every branch.")
    article.get_by_role("button", name="Add article").click()
    page.wait_for_url(f"{base}/customer-service/")
    expect(page.locator(".flash.success")).to_contain_text("Article 'Parking' added and indexed.")
    assert Article.objects.for_org(organisation).get().chunks.count() == 1
    # The template saved before is still listed: one operation does not reset another's data.
    expect(page.locator("main")).to_contain_text("Cards arrive within 3 working days.")
