"""The operators' live inbox in a real browser: only the actions valid for the conversation and the operator
show, and closed conversations stay findable in the history (latest first, paged, searchable), read-only."""

import pytest
from playwright.sync_api import expect

from core.tenancy import services as tenancy
from core.tenancy.models import Membership, Role, User
from customer_service import services
from tests.e2e.accounts import PASSWORD, log_in
from tests.worker import asgi_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

JANE = "Hi, I am Jane Roe (jane.roe@example.com): my parcel never arrived"


def _operator(organisation, email: str) -> User:
    user = User.objects.create_user(username=email, email=email, password=PASSWORD)
    Membership.all_tenants.create(organisation=organisation, user=user, role=Role.OPERATOR)
    return user


def _chat(bot, *texts: str):
    conversation, _token, _greeting = services.conversation_start(bot=bot)
    for text in texts:
        services.visitor_message(conversation=conversation, text=text)
    return conversation


def test_actions_follow_the_state_and_closed_conversations_are_found_in_the_history(page):
    organisation, _owner = tenancy.organisation_sign_up(
        organisation_name="Inbox Org", email="inbox.owner@example.com", password=PASSWORD
    )
    sam, lee = _operator(organisation, "sam@example.com"), _operator(organisation, "lee@example.com")
    bot = services.bot_settings_for(organisation=organisation)
    jane = _chat(bot, JANE, "Can I talk to a human?")
    services.conversation_take_over(organisation=organisation, conversation_id=jane.pk, user=sam)
    services.conversation_close_by_operator(organisation=organisation, conversation_id=jane.pk, user=sam)
    for _ in range(21):  # closed after Jane's: hers moves to the history's second page
        services.conversation_close(conversation=_chat(bot), by="the visitor")
    waiting = _chat(bot, "My invoice is wrong, let me talk to a human")
    lees = _chat(bot, "Talk to a human about my refund")
    services.conversation_take_over(organisation=organisation, conversation_id=lees.pk, user=lee)
    actions = ("#take-over", "#hand-back", "#close", "#reply-form")

    def shown(*visible: str) -> None:
        for selector in actions:
            if selector in visible:
                expect(page.locator(selector)).to_be_visible()
            else:
                expect(page.locator(selector)).to_be_hidden()

    with asgi_server() as base:
        log_in(page, base, sam.email)
        page.goto(f"{base}/customer-service/inbox/")
        rows = page.locator("tr.conversation")
        expect(rows).to_have_count(2)  # open ones only: the waiting one and Lee's
        expect(page.locator(f'tr[data-id="{jane.pk}"]')).to_have_count(0)

        page.locator(f'tr[data-id="{lees.pk}"] a').click()
        expect(page.locator("#conversation-title")).to_have_text(f"Conversation #{lees.pk} · operator")
        shown()  # another operator's conversation: nothing to do here
        expect(page.locator("#conversation-note")).to_have_text(
            "lee@example.com is handling this conversation."
        )
        page.locator(f'tr[data-id="{waiting.pk}"] a').click()
        expect(page.locator("#conversation-title")).to_have_text(f"Conversation #{waiting.pk} · waiting")
        shown("#take-over")
        page.click("#take-over")
        expect(page.locator("#conversation-title")).to_contain_text("operator")
        shown("#hand-back", "#close", "#reply-form")
        page.click("#close")
        expect(page.locator("#conversation-title")).to_contain_text("closed")
        shown()  # closed: no action buttons at all
        expect(page.locator("#conversation-note")).to_contain_text("a read-only transcript")
        expect(rows).to_have_count(1)  # gone from the open list...

        page.click("#tab-history")  # ...and in the history, latest closed first
        expect(rows).to_have_count(20)
        expect(rows.first).to_have_attribute("data-id", str(waiting.pk))
        expect(page.locator("#page-info")).to_have_text("page 1 of 2")
        expect(page.locator(f'tr[data-id="{jane.pk}"]')).to_have_count(0)
        page.click("#older")
        expect(page.locator("#page-info")).to_have_text("page 2 of 2")
        expect(page.locator(f'tr[data-id="{jane.pk}"]')).to_have_count(1)

        page.click("#newer")
        expect(page.locator("#page-info")).to_have_text("page 1 of 2")
        page.fill("#search", "JANE.ROE@example.com")
        page.press("#search", "Enter")
        expect(rows).to_have_count(1)
        expect(page.locator("#pager")).to_be_hidden()
        found = page.locator(f'tr[data-id="{jane.pk}"]')
        expect(found.locator(".preview")).to_have_text(JANE)
        found.locator("a").click()
        expect(page.locator("#conversation-title")).to_have_text(f"Conversation #{jane.pk} · closed")
        expect(page.locator("#messages")).to_contain_text("my parcel never arrived")
        expect(page.locator("#messages")).to_contain_text("closed by")
        shown()
        expect(page.locator("#conversation-note")).to_contain_text("a read-only transcript")

        page.fill("#search", "nobody wrote this")
        page.press("#search", "Enter")
        expect(rows).to_have_count(0)
        expect(page.locator("#no-conversations")).to_have_text(
            "No closed conversation matches \u201cnobody wrote this\u201d."
        )


def test_a_request_left_without_an_answer_does_not_stop_the_inbox(page):
    """The inbox polls the list one request at a time: one that never got an answer (a dropped connection)
    held every later poll behind it, so the list stayed empty for good. Now it is given up after its timeout
    and the next poll shows the conversations."""
    organisation, _owner = tenancy.organisation_sign_up(
        organisation_name="Stalled Org", email="stalled.owner@example.com", password=PASSWORD
    )
    sam = _operator(organisation, "sam.stalled@example.com")
    bot = services.bot_settings_for(organisation=organisation)
    waiting = _chat(bot, "Can I talk to a human?")
    held: list[str] = []

    def hold_the_first_list(route) -> None:
        if not held:
            held.append(route.request.url)  # never answered: the request hangs as a dropped one would
            return
        route.continue_()

    with asgi_server() as base:
        log_in(page, base, sam.email)
        page.route("**/api/customer-service/conversations/?*", hold_the_first_list)
        page.clock.install()
        page.goto(f"{base}/customer-service/inbox/")
        expect(page.locator("#conversations")).to_be_visible()
        page.wait_for_timeout(1000)
        assert len(held) == 1 and page.locator("tr.conversation").count() == 0
        page.clock.run_for(16_000)  # past the request's timeout; the next poll comes 3 s after it ends
        page.clock.run_for(4_000)
        expect(page.locator(f'tr[data-id="{waiting.pk}"]')).to_have_count(1)
