"""A new customer of the recommender in a real browser, from sign-up to a first recommendation through the
pages alone: the dashboard's next step leads to the checklist, "Load the sample shop" fills the catalogue and
behaviour, and the explorer answers with popular items before any model is trained."""

import pytest
from playwright.sync_api import expect

from core.tenancy.models import Organisation
from recommender.models import Event, Item

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PASSWORD = "e2e-Trellis-pass-42"


def _step(page, key):
    return page.locator(f'#checklist li[data-step="{key}"]')


def test_a_new_shop_gets_its_first_recommendations_from_the_pages(live_server, page):
    base = live_server.url
    page.goto(f"{base}/signup/")
    page.fill("#id_organisation_name", "Shop Start Org")
    page.fill("#id_email", "shop.owner@example.com")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Create organisation").click()
    page.wait_for_url(f"{base}/dashboard/")
    organisation = Organisation.objects.get(name="Shop Start Org")

    next_step = page.locator('[data-next-step="Recommender"]')
    expect(next_step).to_contain_text("Load the sample shop, or upload your catalogue")
    expect(next_step).to_contain_text("0 of 3 done")
    next_step.get_by_role("link", name="Go to the checklist").click()
    page.wait_for_url(f"{base}/recommender/#checklist")
    expect(page.locator("#catalogue-form")).to_be_visible()
    expect(page.locator("#train-form")).to_be_visible()

    _step(page, "catalogue").get_by_role("button", name="Load the sample shop").click()
    expect(page.locator(".flash.success")).to_contain_text(
        "Sample shop loaded: 1505 items and 5000 purchases"
    )
    expect(page.locator("#checklist h2")).to_have_text("Get started: 2 of 3 done")
    expect(_step(page, "train")).to_have_attribute("data-done", "0")
    assert Item.objects.for_org(organisation).count() == 1505
    assert Event.objects.for_org(organisation).count() == 5000

    page.get_by_label("User id").fill("16187")
    page.get_by_role("button", name="Recommend").click()
    expect(page.locator("#explorer-history li").first).to_contain_text("purchase:")
    listed = page.locator("#explorer-list")
    expect(listed.locator("h3")).to_have_text("Recommended: popular items (no model trained yet)")
    expect(listed.locator("li")).to_have_count(10)
