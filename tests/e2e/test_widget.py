"""The branded chat widget on a customer's own site, in a real browser against the real ASGI server: the
tenant's colour, name, avatar, corner and welcome text applied; the visitor's message shown delivered once the
server acknowledges it; an answer from a knowledge-base article linking the article (as text, not markup)."""

import io

import pytest
from PIL import Image
from playwright.sync_api import expect

from core.tenancy import services as tenancy
from core.tenancy.models import Membership, Role, User
from customer_service import services
from customer_service.models import Conversation, Message
from customer_service.services import branding
from tests.e2e.accounts import PASSWORD, log_in
from tests.e2e.test_chat import PARKING, _shop_page, customer_site
from tests.worker import asgi_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TITLE = 'Parking <img src=x onerror="window.pwned=1"> & bikes'


def _avatar() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 120, 40)).save(out, format="JPEG")
    return out.getvalue()


def test_branded_widget_shows_delivery_and_links_the_article(browser):
    expect.set_options(timeout=20_000)  # the first answer loads the encoder in the server process
    organisation, _owner = tenancy.organisation_sign_up(
        organisation_name="Widget Org", email="widget.owner@example.com", password=PASSWORD
    )
    widget = {}

    def page_html():
        return _shop_page(widget["base"], widget["key"])

    # one message a minute: the second is refused, which the widget shows as not sent, with Retry
    with asgi_server({"CS_WIDGET_MESSAGES_PER_MINUTE": "1"}) as base, customer_site(page_html) as shop:
        services.article_save(
            organisation=organisation, title=TITLE, body=PARKING, url=f"{shop}/help/parking"
        )
        bot = services.bot_settings_update(organisation=organisation, allowed_origins=[shop])
        branding.branding_update(
            organisation=organisation,
            colour="#AA3300",
            bot_name="Ada",
            position="bottom-left",
            welcome_text="Welcome to the shop!",
            avatar=_avatar(),
        )
        widget.update(base=base, key=bot.widget_key)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        visitor = context.new_page()
        visitor.goto(f"{shop}/")

        launcher = visitor.locator("#launcher")  # inside the widget's shadow root
        expect(launcher).to_have_css("background-color", "rgb(170, 51, 0)")
        assert launcher.bounding_box()["x"] < 100  # bottom-left
        launcher.click()
        expect(visitor.locator("#title")).to_have_text("Ada")
        expect(visitor.locator("header")).to_have_css("background-color", "rgb(170, 51, 0)")
        expect(visitor.locator("#welcome")).to_have_text("Welcome to the shop!")
        avatar = visitor.locator("#avatar")
        expect(avatar).to_be_visible()
        loaded = (
            "() => document.querySelector('#trellis-chat').shadowRoot.querySelector('#avatar').naturalWidth"
        )
        visitor.wait_for_function(loaded)

        visitor.fill("#input", "Is there parking at the branch?")
        visitor.press("#input", "Enter")
        mine = visitor.locator(".msg.visitor")
        expect(mine).to_have_text("Is there parking at the branch?")  # at once, before any answer
        expect(mine).to_have_attribute("data-state", "delivered")
        expect(visitor.locator(".state")).to_have_text("Delivered")
        assert (
            Message.objects.for_org(organisation).filter(sender="visitor").exclude(client_id="").count() == 1
        )

        answer = visitor.locator('.msg[data-source="article"]')
        expect(answer).to_contain_text("free customer parking")
        link = answer.locator("a.article-link")
        expect(link).to_have_text(TITLE)  # the title as text: no element made of it
        expect(link).to_have_attribute("href", f"{shop}/help/parking")
        assert visitor.locator(".log img").count() == 0
        assert visitor.evaluate("() => window.pwned") is None
        with context.expect_page() as opened:
            link.click()
        article_page = opened.value
        article_page.wait_for_load_state()
        assert article_page.url == f"{shop}/help/parking"

        visitor.fill("#input", "And for bicycles?")
        visitor.press("#input", "Enter")
        refused = visitor.locator(".msg.visitor", has_text="And for bicycles?")
        expect(refused).to_have_attribute("data-state", "failed")
        state = visitor.locator(".state.failed")
        expect(state).to_contain_text("Not sent: Too many messages")
        state.locator("button.retry").click()  # the same client id again: still over the minute's limit
        expect(refused).to_have_attribute("data-state", "failed")
        expect(visitor.locator(".msg.visitor")).to_have_count(2)  # one bubble, not a new one per attempt
        context.close()
    visitor_texts = (
        Message.objects.for_org(organisation).filter(sender="visitor").values_list("text", flat=True)
    )
    assert list(visitor_texts) == ["Is there parking at the branch?"]


def test_operator_and_visitor_see_each_other_typing(browser):
    expect.set_options(timeout=20_000)
    organisation, _owner = tenancy.organisation_sign_up(
        organisation_name="Typing Org", email="typing.owner@example.com", password=PASSWORD
    )
    sam = User.objects.create_user(
        username="sam.t@example.com", email="sam.t@example.com", password=PASSWORD, first_name="Sam"
    )
    Membership.all_tenants.create(organisation=organisation, user=sam, role=Role.OPERATOR)
    widget = {}

    with asgi_server() as base, customer_site(lambda: _shop_page(widget["base"], widget["key"])) as shop:
        bot = services.bot_settings_update(organisation=organisation, allowed_origins=[shop])
        widget.update(base=base, key=bot.widget_key)
        visitor_context = browser.new_context()
        visitor_context.set_default_timeout(20_000)
        visitor = visitor_context.new_page()
        visitor.goto(f"{shop}/")
        visitor.click("#launcher")
        expect(visitor.locator(".msg.bot").first).to_have_text(bot.greeting)
        conversation = Conversation.objects.for_org(organisation).get()

        operator_context = browser.new_context(viewport={"width": 1280, "height": 900})
        operator_context.set_default_timeout(20_000)
        inbox = operator_context.new_page()
        log_in(inbox, base, sam.email)
        inbox.goto(f"{base}/customer-service/inbox/")
        inbox.locator(f'tr[data-id="{conversation.pk}"] a').click()
        inbox.click("#take-over")
        expect(inbox.locator("#reply")).to_be_visible()

        inbox.locator("#reply").press_sequentially("Let me check", delay=20)
        expect(visitor.locator("#typing")).to_have_text("Sam is typing\u2026")
        expect(visitor.locator("#typing")).to_be_hidden(timeout=10_000)  # a few seconds after the last signal

        visitor.locator("#input").press_sequentially("one more thing", delay=20)
        expect(inbox.locator("#visitor-typing")).to_have_text("The visitor is typing\u2026")
        visitor.press("#input", "Enter")
        expect(inbox.locator("#messages")).to_contain_text("one more thing")
        expect(inbox.locator("#visitor-typing")).to_be_hidden()
        visitor_context.close()
        operator_context.close()
