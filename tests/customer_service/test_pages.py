"""The chatbot's set-up page and inbox page (server side; the live behaviour is in tests/e2e/test_chat.py)."""

import pytest
from django.test import Client

from core.tenancy.models import Role
from customer_service import services
from customer_service.models import AnswerTemplate, Article
from tests.customer_service.conftest import login


@pytest.mark.django_db
def test_setup_page_saves_content_and_shows_form_errors(make_org, make_member):
    organisation, owner = make_org()
    client = login(owner)
    page = client.get("/customer-service/")
    bot = services.bot_settings_for(organisation=organisation)
    assert page.status_code == 200 and f"data-key=&quot;{bot.widget_key}&quot;".encode() in page.content

    saved = client.post("/customer-service/templates/", {"intent": "card_arrival", "body": "3 days."})
    assert saved.status_code == 302
    assert AnswerTemplate.objects.for_org(organisation).get().body == "3 days."
    added = client.post(
        "/customer-service/articles/",
        {"title": "Parking", "body": "Free parking behind every branch.", "url": ""},
    )
    assert added.status_code == 302 and Article.objects.for_org(organisation).get().chunks.count() == 1

    settings = {
        "bot_name": "Ada",
        "greeting": "Hi!",
        "handoff_message": "One moment.",
        "intent_threshold": "0.7",
        "retrieval_threshold": "0.4",
        "allowed_origins": "https://shop.example.com\nnot a site",
    }
    refused = client.post("/customer-service/settings/", settings)
    assert refused.status_code == 200 and b"is not an origin" in refused.content
    assert services.bot_settings_for(organisation=organisation).bot_name == "Assistant"  # nothing half-saved
    settings["allowed_origins"] = "https://shop.example.com"
    assert client.post("/customer-service/settings/", settings).status_code == 302
    bot = services.bot_settings_for(organisation=organisation)
    assert (bot.bot_name, bot.intent_threshold, bot.allowed_origins) == (
        "Ada",
        0.7,
        ["https://shop.example.com"],
    )
    too_high = client.post("/customer-service/settings/", {**settings, "intent_threshold": "1.5"})
    assert too_high.status_code == 200 and b"less than or equal to 1" in too_high.content

    from django.core.files.uploadedfile import SimpleUploadedFile

    uploaded = client.post(
        "/customer-service/templates/import/",
        {
            "file": SimpleUploadedFile("a.csv", b"intent,answer\nchange_pin,At an ATM.\n,x\n"),
        },
        follow=True,
    )
    assert b"1 answers saved." in uploaded.content and b"Line 3: The intent must be" in uploaded.content
    assert AnswerTemplate.objects.for_org(organisation).get(intent="change_pin").body == "At an ATM."
    bad = client.post(
        "/customer-service/templates/import/", {"file": SimpleUploadedFile("a.csv", b"\xff\xfe")}
    )
    assert bad.status_code == 200 and b"not UTF-8" in bad.content
    # One view per operation: the page itself only shows; a form posts to its own address.
    assert client.post("/customer-service/", {"form": "template"}).status_code == 405

    viewer = login(make_member(organisation, Role.VIEWER))
    assert viewer.get("/customer-service/").status_code == 200
    assert viewer.post("/customer-service/templates/", {"intent": "x", "body": "y"}).status_code == 403
    assert viewer.get("/customer-service/inbox/").status_code == 403
    operator = login(make_member(organisation, Role.OPERATOR))
    assert b"Live inbox" in operator.get("/customer-service/inbox/").content

    script = Client().get("/customer-service/widget.js")
    assert script.status_code == 200 and script["Content-Type"].startswith("text/javascript")
    assert b"/ws/chat/" in script.content
