"""The chatbot's set-up page in a real browser: its sections are tabs (the open one in the URL's hash, every
section shown without JavaScript); each form posts to its own operation, a saved form comes back on its tab
with a success message, and a refused one is shown again, on its tab, with its error and what was typed."""

import pytest
from playwright.sync_api import expect

from core.tenancy import services as tenancy
from customer_service import services
from customer_service.models import AnswerTemplate, Article
from tests.e2e.accounts import PASSWORD, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TABS = ["answers", "knowledge", "model", "widget"]


def _only_visible(page, tab):
    for name in TABS:
        panel = page.locator(f"section.tab-panel#{name}")
        (expect(panel).to_be_visible if name == tab else expect(panel).to_be_hidden)()
    expect(page.locator(f"#tab-{tab}")).to_have_attribute("aria-selected", "true")


def test_each_form_saves_on_its_own_tab_and_a_refused_one_keeps_its_input(live_server, page):
    base = live_server.url
    organisation, owner = tenancy.organisation_sign_up(
        organisation_name="Setup Org", email="setup.owner@example.com", password=PASSWORD
    )
    log_in(page, base, owner.email)

    page.goto(f"{base}/customer-service/")
    expect(page.locator(".tab-bar a")).to_have_text(
        ["Answers", "Knowledge base", "Model and thresholds", "Widget and settings"]
    )
    _only_visible(page, "answers")  # no hash: the first tab
    tabbed_height = page.evaluate("document.documentElement.scrollHeight")
    template = page.locator("#template-form")
    template.locator("[name=intent]").fill("card_arrival")
    template.locator("[name=body]").fill("Cards arrive within 3 working days.")
    template.get_by_role("button", name="Save answer").click()
    page.wait_for_url(f"{base}/customer-service/#answers")
    expect(page.locator(".flash.success")).to_contain_text("Answer for 'card_arrival' saved.")
    _only_visible(page, "answers")
    assert AnswerTemplate.objects.for_org(organisation).get().intent == "card_arrival"

    page.get_by_role("tab", name="Widget and settings").click()
    assert page.url == f"{base}/customer-service/#widget"
    _only_visible(page, "widget")
    expect(page.locator("#widget-snippet")).to_contain_text("data-key=")
    settings = page.locator("#settings-form")
    settings.locator("[name=bot_name]").fill("Ada")
    settings.locator("[name=allowed_origins]").fill("not a site")
    settings.get_by_role("button", name="Save settings").click()
    page.wait_for_url(f"{base}/customer-service/settings/")
    _only_visible(page, "widget")  # the refused form's tab, flagged
    expect(page.locator("#tab-widget")).to_have_class("has-error")
    expect(page.locator("#settings-form")).to_contain_text("is not an origin")
    expect(page.locator("#settings-form [name=bot_name]")).to_have_value("Ada")  # what was typed stays
    assert services.bot_settings_for(organisation=organisation).bot_name == "Assistant"  # nothing saved

    page.get_by_role("tab", name="Knowledge base").click()
    article = page.locator("#article-form")
    article.locator("[name=title]").fill("Parking")
    article.locator("[name=body]").fill("Free parking behind every branch.")
    article.get_by_role("button", name="Add article").click(timeout=60_000)  # loads the encoder
    page.wait_for_url(f"{base}/customer-service/#knowledge", timeout=60_000)
    expect(page.locator(".flash.success")).to_contain_text("Article 'Parking' added and indexed.")
    _only_visible(page, "knowledge")
    assert Article.objects.for_org(organisation).get().chunks.count() == 1

    # a link into a tab (a hash naming a section inside it) opens that tab, also from another page
    page.goto(f"{base}/customer-service/#office-hours")
    _only_visible(page, "model")
    page.locator("#tab-model").focus()  # the arrow keys move between tabs
    page.keyboard.press("ArrowRight")
    _only_visible(page, "widget")
    assert page.url.endswith("/customer-service/#widget")
    page.reload()
    _only_visible(page, "widget")  # the tab survives a reload: it is the URL's
    # The template saved before is still listed: one operation does not reset another's data.
    page.get_by_role("tab", name="Answers").click()
    expect(page.locator("#answers")).to_contain_text("Cards arrive within 3 working days.")
    assert tabbed_height < 2500, tabbed_height


def test_without_javascript_every_section_shows(live_server, browser):
    base = live_server.url
    _organisation, owner = tenancy.organisation_sign_up(
        organisation_name="NoJS Org", email="nojs.owner@example.com", password=PASSWORD
    )
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        log_in(page, base, owner.email)
        page.goto(f"{base}/customer-service/#model")
        expect(page.locator(".tab-bar")).to_have_count(0)
        for name in TABS:
            expect(page.locator(f"section.tab-panel#{name}")).to_be_visible()
        expect(page.locator("#template-form")).to_be_visible()
        expect(page.locator("#settings-form")).to_be_visible()
    finally:
        context.close()
