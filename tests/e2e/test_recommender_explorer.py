"""The recommender's explorer in a real browser under uvicorn: a model trained on the serving tests' small
shop (``tests/recommender/conftest.py``), a user looked up through the page's form shows their history, the
ranked list and why each item is there; another organisation's owner asking for the same user id is told it
is not found in their organisation and sees none of the first shop's items."""

import pytest
from playwright.sync_api import expect

from core.tenancy import services as tenancy
from recommender.services import catalogue, events
from tests.e2e.accounts import PASSWORD, log_in
from tests.recommender.conftest import ITEMS, shop_events, train_now
from tests.worker import asgi_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def explore(page, base: str, user: str) -> None:
    page.goto(f"{base}/recommender/")
    page.get_by_label("User id").fill(user)
    page.get_by_role("button", name="Recommend").click()
    page.wait_for_url(f"{base}/recommender/?user={user}")


def test_explorer_shows_history_list_and_why_and_hides_other_organisations(browser):
    shop, owner = tenancy.organisation_sign_up(
        organisation_name="Explorer Shop", email="explorer.owner@example.com", password=PASSWORD
    )
    catalogue.items_upsert(organisation=shop, rows=ITEMS)
    assert events.events_ingest(organisation=shop, rows=shop_events()).created == 61
    train_now(shop)  # item-kNN, as the page tests train
    _other, other_owner = tenancy.organisation_sign_up(
        organisation_name="Other Shop", email="other.owner@example.com", password=PASSWORD
    )

    with asgi_server() as base:
        page = browser.new_page()
        log_in(page, base, owner.email)
        explore(page, base, "u0")  # bought the red and blue mugs and the gift bag
        history = page.locator("#explorer-history li")
        expect(history).to_have_count(3)
        expect(page.locator("#explorer-history")).to_contain_text("Red mug")
        expect(page.locator("#explorer-history")).to_contain_text("Blue mug")
        heading = page.locator("#explorer-list h3")
        expect(heading).to_contain_text("Item-kNN")
        expect(heading).to_contain_text("v1")
        listed = page.locator("#explorer-list li")
        expect(listed.first).to_be_visible()
        texts = listed.all_inner_texts()
        # purchased items are not served back; every item the model ranks says which history items drove it
        assert texts and not any(t.startswith(("Red mug", "Blue mug", "Gift bag")) for t in texts), texts
        assert all("because of" in t or "popular" in t for t in texts), texts
        assert any("because of" in t for t in texts), texts
        plate = page.locator("#explorer-list li", has_text="White plate")
        expect(plate).to_contain_text("because of")
        page.close()

        page = browser.new_page()  # another organisation's owner asks for the same user id
        log_in(page, base, other_owner.email)
        explore(page, base, "u0")
        expect(page.locator("#explorer-history")).to_contain_text("not found")
        expect(page.locator("#explorer-history li")).to_have_count(0)
        expect(page.locator("body")).not_to_contain_text("Red mug")
        expect(page.locator("body")).not_to_contain_text("White plate")
        page.close()
