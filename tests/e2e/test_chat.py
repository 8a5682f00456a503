"""The chat widget on a customer's own site and the operator's live inbox, in real browsers against the real
ASGI server (uvicorn: HTTP and websockets)."""

import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from core.tenancy import services as tenancy
from core.tenancy.models import Membership, Role, User
from customer_service import services
from customer_service.models import Conversation, ConversationStatus, Message
from tests.customer_service.conftest import train_intent_model
from tests.e2e.accounts import PASSWORD, log_in
from tests.worker import asgi_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PARKING = "Every branch has free customer parking behind the building, with spaces for bicycles too."


def _shop_page(base: str, key: str) -> str:
    return (
        "<!doctype html><html><head><title>Shop</title><style>div{color:red}</style></head>"
        "<body><h1>Our shop</h1>"
        f'<script src="{base}/customer-service/widget.js" data-key="{key}" async></script></body></html>'
    )


@contextmanager
def customer_site(page_html):
    """Another web site (its own origin) that embeds the widget: ``page_html(site_url) -> html``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = page_html().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_visitor_chats_on_a_customer_site_and_an_operator_takes_over(browser):
    expect.set_options(timeout=20_000)  # the first answer loads the encoder in the server process
    organisation, _owner = tenancy.organisation_sign_up(
        organisation_name="Chat Org", email="chat.owner@example.com", password=PASSWORD
    )
    operator = User.objects.create_user(
        username="sam@example.com", email="sam@example.com", password=PASSWORD
    )
    Membership.all_tenants.create(organisation=organisation, user=operator, role=Role.OPERATOR)
    services.article_save(organisation=organisation, title="Parking", body=PARKING)
    train_intent_model(organisation)  # 8 BANKING77 intents, no templates: questions reach the knowledge base
    widget = {}

    def page_html():
        return _shop_page(widget["base"], widget["key"])

    with asgi_server() as base, customer_site(page_html) as shop, customer_site(page_html) as elsewhere:
        bot = services.bot_settings_update(organisation=organisation, allowed_origins=[shop])
        widget.update(base=base, key=bot.widget_key)
        visitor_context = browser.new_context()
        visitor_context.set_default_timeout(20_000)
        visitor = visitor_context.new_page()
        visitor.goto(f"{shop}/")
        visitor.click("#launcher")  # inside the widget's shadow root
        expect(visitor.locator(".msg.bot").first).to_have_text(bot.greeting)
        visitor.fill("#input", "Is there parking at the branch?")
        visitor.press("#input", "Enter")
        expect(visitor.locator(".msg.visitor")).to_have_text("Is there parking at the branch?")
        expect(visitor.locator('.msg[data-source="article"]')).to_contain_text("free customer parking")
        visitor.fill("#input", "I would like to talk to a human")
        visitor.click("#send")
        # nobody has the inbox open yet: the bot says so and asks for an e-mail address
        handoff = visitor.locator('.msg[data-source="handoff"]')
        expect(handoff).to_contain_text("Nobody from our team is online")

        operator_context = browser.new_context(viewport={"width": 1280, "height": 900})
        operator_context.set_default_timeout(20_000)
        inbox = operator_context.new_page()
        log_in(inbox, base, operator.email)
        inbox.goto(f"{base}/customer-service/")
        inbox.click("#open-inbox")
        waiting = inbox.locator("tr.conversation.waiting")
        expect(waiting).to_have_count(1)
        expect(inbox).to_have_title("(1 waiting) Live inbox · Trellis")
        waiting.locator("a").click()
        expect(inbox.locator("#conversation-reason")).to_contain_text("asked for a person")
        expect(inbox.locator("#messages")).to_contain_text("Is there parking at the branch?")
        first = inbox.locator(".message.visitor", has_text="Is there parking at the branch?")
        first.locator("select.correct").select_option("atm_support")  # the operator's correction
        expect(first).to_have_class("message visitor corrected")
        inbox.click("#take-over")
        expect(inbox.locator("#conversation-title")).to_contain_text("operator")
        expect(inbox).to_have_title("Live inbox · Trellis")  # nobody waits any more
        inbox.fill("#reply", "Hi, this is Sam. How can I help?")
        inbox.click("#send")

        expect(visitor.locator(".msg.system").last).to_contain_text("joined the conversation")
        expect(visitor.locator(".msg.operator")).to_contain_text("Hi, this is Sam. How can I help?")
        visitor.fill("#input", "Where do bicycles go?")
        visitor.press("#input", "Enter")
        expect(inbox.locator("#messages")).to_contain_text("Where do bicycles go?")  # live, no reload

        # another page view on the shop resumes the same conversation with its history
        visitor.reload()
        visitor.click("#launcher")
        expect(visitor.locator(".msg.operator")).to_contain_text("Hi, this is Sam.")
        expect(visitor.locator(".msg.visitor")).to_have_count(3)
        visitor.click("#end")
        expect(visitor.locator("#rate")).to_be_visible()
        visitor.click('button[data-rating="4"]')
        expect(visitor.locator("#thanks")).to_be_visible()
        expect(visitor.locator("#again")).to_be_visible()

        # a site the bot does not allow gets no chat
        stranger_context = browser.new_context()
        stranger = stranger_context.new_page()
        stranger.goto(f"{elsewhere}/")
        stranger.click("#launcher")
        expect(stranger.locator("#note")).to_have_text("Chat is not available on this site.")
        for context in (visitor_context, operator_context, stranger_context):
            context.close()

    conversation = Conversation.objects.for_org(organisation).get()
    assert conversation.status == ConversationStatus.CLOSED and conversation.rating == 4
    assert conversation.origin == shop and conversation.assigned_to == operator
    corrected = Message.objects.for_org(organisation).get(text="Is there parking at the branch?")
    assert corrected.corrected_intent == "atm_support" and corrected.intent  # the model's guess is kept too
    texts = list(
        Message.objects.for_org(organisation).filter(sender="visitor").values_list("text", flat=True)
    )
    assert texts == [
        "Is there parking at the branch?",
        "I would like to talk to a human",
        "Where do bicycles go?",
    ]
