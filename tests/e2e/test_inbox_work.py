"""The inbox operators work in, in a real browser: a new waiting visitor is announced, the unread count and
visitor's page show, the keyboard takes the conversation over and replies, and a saved reply and an internal
note go where they belong (the note never into the visitor's transcript)."""

import pytest
from playwright.sync_api import expect

from core.tenancy import services as tenancy
from core.tenancy.models import Membership, Role, User
from customer_service import services
from customer_service.models import ConversationStatus, InternalNote, Message, Sender
from tests.e2e.accounts import PASSWORD, log_in
from tests.worker import asgi_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAGE = "https://shop.example.com/checkout?step=2"


def test_keyboard_takes_over_and_replies_with_a_saved_reply_and_a_note_stays_internal(page):
    organisation, _owner = tenancy.organisation_sign_up(
        organisation_name="Keys Org", email="keys.owner@example.com", password=PASSWORD
    )
    sam = User.objects.create_user(
        username="sam.keys@example.com", email="sam.keys@example.com", password=PASSWORD
    )
    Membership.all_tenants.create(organisation=organisation, user=sam, role=Role.OPERATOR)
    services.saved_reply_save(organisation=organisation, title="Greeting", body="Hi, Sam here: let me look.")
    bot = services.bot_settings_for(organisation=organisation)

    with asgi_server() as base:
        log_in(page, base, sam.email)
        page.goto(f"{base}/customer-service/inbox/")
        expect(page.locator("#no-conversations")).to_be_visible()
        expect(page.locator("#shortcuts")).to_contain_text("Take over the open conversation")

        # a visitor asks for a person while the inbox is open: announced (sound, notification), unread 2
        conversation, _token, _greeting = services.conversation_start(bot=bot, page=PAGE)
        services.visitor_message(conversation=conversation, text="My order is stuck at checkout")
        services.visitor_message(conversation=conversation, text="Talk to a human please")
        row = page.locator(f'tr.conversation.waiting[data-id="{conversation.pk}"]')
        expect(row.locator("td.unread")).to_have_text("2")
        expect(page.locator("#conversations")).to_have_attribute("data-alerts", "1")
        expect(page).to_have_title("(1 waiting) Live inbox · Trellis")

        row.locator("a").click()
        expect(page.locator("#visitor-page a")).to_have_attribute("href", PAGE)
        expect(row.locator("td.unread")).to_have_text("")  # seen once shown

        page.keyboard.press("t")  # take over, from the keyboard
        expect(page.locator("#conversation-title")).to_have_text(
            f"Conversation #{conversation.pk} · operator"
        )
        page.keyboard.press("r")  # to the reply box
        expect(page.locator("#reply")).to_be_focused()
        page.select_option("#saved-reply", label="Greeting")
        expect(page.locator("#reply")).to_have_value("Hi, Sam here: let me look.")
        page.keyboard.press("Enter")
        expect(page.locator("#messages .message.operator")).to_contain_text("Hi, Sam here: let me look.")

        page.keyboard.press("Escape")
        page.keyboard.press("n")
        expect(page.locator("#note")).to_be_focused()
        page.keyboard.type("Offer free shipping next time")
        page.click("#add-note")
        expect(page.locator("#messages .message.note")).to_contain_text("Offer free shipping next time")

    conversation.refresh_from_db()
    assert conversation.status == ConversationStatus.OPERATOR and conversation.assigned_to == sam
    replies = Message.objects.for_org(organisation).filter(conversation=conversation, sender=Sender.OPERATOR)
    assert [m.text for m in replies] == ["Hi, Sam here: let me look."]
    assert InternalNote.objects.for_org(organisation).get().text == "Offer free shipping next time"
    assert not Message.objects.for_org(organisation).filter(text__contains="free shipping").exists()
