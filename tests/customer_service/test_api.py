"""The chatbot's REST API: content management, the answer endpoint, the inbox actions, roles and tenants."""

import pytest

from core.billing.models import Meter, UsageEvent
from core.tenancy.models import Role
from customer_service import services
from customer_service.models import Article, ArticleChunk, ConversationStatus
from tests.customer_service.conftest import PARKING

BASE = "/api/customer-service"


@pytest.mark.django_db
def test_content_settings_and_answer_endpoint(make_org, make_member, make_key, key_client, user_client):
    organisation, owner = make_org()
    client = user_client(owner)
    settings = client.patch(
        f"{BASE}/settings/",
        {"allowed_origins": ["https://shop.example.com"], "retrieval_threshold": 0.45},
        format="json",
    )
    assert settings.status_code == 200 and settings.json()["allowed_origins"] == ["https://shop.example.com"]
    bad = client.patch(f"{BASE}/settings/", {"intent_threshold": 3}, format="json")
    assert bad.status_code == 400 and "between 0 and 1" in bad.json()["error"]["message"]
    unknown = client.patch(f"{BASE}/settings/", {"colour": "red"}, format="json")
    assert unknown.status_code == 400
    old_key = settings.json()["widget_key"]
    assert client.post(f"{BASE}/settings/rotate-key/").json()["widget_key"] != old_key

    created = client.post(
        f"{BASE}/templates/", {"intent": "card_arrival", "body": "Cards take 5 days."}, format="json"
    )
    assert created.status_code == 201
    replaced = client.post(
        f"{BASE}/templates/", {"intent": "card_arrival", "body": "Cards take 3 days."}, format="json"
    )
    assert replaced.json()["id"] == created.json()["id"] and replaced.json()["body"] == "Cards take 3 days."
    empty = client.post(f"{BASE}/templates/", {"intent": "card_arrival", "body": ""}, format="json")
    assert empty.status_code == 400
    assert client.get(f"{BASE}/templates/").json()["results"][0]["body"] == "Cards take 3 days."

    article = client.post(f"{BASE}/articles/", {"title": "Parking", "body": PARKING}, format="json")
    assert article.status_code == 201
    article_id = article.json()["id"]
    assert ArticleChunk.objects.for_org(organisation).filter(article_id=article_id).count() == 1
    no_title = client.post(f"{BASE}/articles/", {"title": " ", "body": PARKING}, format="json")
    assert no_title.status_code == 400 and Article.objects.for_org(organisation).count() == 1

    # the answer endpoint, for a machine with the predict scope: metered once per call
    _key, secret = make_key(organisation, scopes=["predict"])
    machine = key_client(secret)
    answer = machine.post(f"{BASE}/answer", {"text": "Is there parking at the branch?"}, format="json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["source"] == "article" and answer.json()["article_id"] == article_id
    handoff = machine.post(f"{BASE}/answer", {"text": "I need to talk to a human"}, format="json")
    assert handoff.json()["handoff"] is True
    assert machine.post(f"{BASE}/answer", {"text": ""}, format="json").status_code == 400
    assert UsageEvent.objects.for_org(organisation).filter(meter=Meter.PREDICTIONS).count() == 2
    assert machine.post(f"{BASE}/articles/", {"title": "x", "body": "y"}, format="json").status_code == 403

    # viewers read, they do not edit
    viewer = user_client(make_member(organisation, Role.VIEWER))
    assert viewer.get(f"{BASE}/articles/{article_id}/").json()["title"] == "Parking"
    assert viewer.delete(f"{BASE}/articles/{article_id}/").status_code == 403
    updated = client.put(
        f"{BASE}/articles/{article_id}/", {"title": "Car parks", "body": PARKING}, format="json"
    )
    assert updated.json()["title"] == "Car parks"
    assert client.delete(f"{BASE}/articles/{article_id}/").status_code == 204
    assert client.get(f"{BASE}/articles/{article_id}/").status_code == 404
    assert not ArticleChunk.objects.for_org(organisation).exists()


@pytest.mark.django_db
def test_inbox_actions_roles_and_tenants(make_org, make_member, user_client):
    organisation, _owner = make_org()
    other, other_owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    conversation, _token, _greeting = services.conversation_start(bot=bot)
    services.visitor_message(conversation=conversation, text="Please let me speak to a person")
    operator = user_client(make_member(organisation, Role.OPERATOR))
    viewer = user_client(make_member(organisation, Role.VIEWER))
    url = f"{BASE}/conversations/{conversation.pk}"

    waiting = operator.get(f"{BASE}/conversations/?status=waiting").json()["results"]
    assert [c["id"] for c in waiting] == [conversation.pk]
    assert operator.get(f"{BASE}/conversations/?status=lost").status_code == 400
    assert viewer.get(f"{BASE}/conversations/").status_code == 403
    refused = operator.post(f"{url}/reply/", {"text": "hi"}, format="json")
    assert refused.status_code == 409 and "Take the conversation over" in refused.json()["error"]["message"]
    assert operator.post(f"{url}/take-over/").json()["status"] == ConversationStatus.OPERATOR
    assert operator.post(f"{url}/reply/", {"text": ""}, format="json").status_code == 400
    assert operator.post(f"{url}/reply/", {"text": "Hello!"}, format="json").status_code == 200
    detail = operator.get(f"{url}/").json()
    assert detail["intents"] == []  # no intent model yet: nothing to correct to
    assert [m["sender"] for m in detail["messages"]] == ["bot", "visitor", "system", "system", "operator"]
    visitor_message = detail["messages"][1]["id"]
    corrected = operator.post(
        f"{BASE}/messages/{visitor_message}/correct/", {"intent": "contact_human_agent"}, format="json"
    )
    assert corrected.json()["corrected_intent"] == "contact_human_agent"
    csv = operator.get(f"{BASE}/corrections.csv")
    assert (
        csv["Content-Type"] == "text/csv"
        and b"Please let me speak to a person,contact_human_agent" in csv.content
    )
    assert viewer.get(f"{BASE}/corrections.csv").status_code == 403  # visitor texts: operators only
    assert viewer.post(f"{BASE}/retrain").status_code == 403
    owner = user_client(_owner)
    no_model = owner.post(f"{BASE}/retrain")
    assert no_model.status_code == 409 and "no active intent model" in no_model.json()["error"]["message"]
    assert operator.post(f"{url}/close/").json()["status"] == ConversationStatus.CLOSED
    assert operator.post(f"{url}/take-over/").status_code == 409

    stranger = user_client(other_owner)
    assert stranger.get(f"{url}/").status_code == 404
    assert stranger.post(f"{url}/take-over/").status_code == 404
    assert (
        stranger.post(
            f"{BASE}/messages/{visitor_message}/correct/", {"intent": "x"}, format="json"
        ).status_code
        == 404
    )
    assert stranger.get(f"{BASE}/conversations/").json()["results"] == []
    assert services.bot_settings_for(organisation=other).widget_key != bot.widget_key


@pytest.mark.django_db
def test_answer_templates_from_a_csv_file(make_org, user_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from customer_service.models import AnswerTemplate

    organisation, owner = make_org()
    client = user_client(owner)
    services.template_save(organisation=organisation, intent="card_arrival", body="Old answer.")

    def upload(data: bytes):
        return client.post(
            f"{BASE}/templates/import", {"file": SimpleUploadedFile("answers.csv", data)}, format="multipart"
        )

    good = (
        b"intent,answer\n"
        b"card_arrival,Cards take 3 days.\n"
        b'change_pin,"At any ATM, choose ""Change PIN""."\n'
        b",No intent here\n"
        b"lost_card,\n"
        b"card_arrival,A second answer for the same intent\n"
        b"extra,too,many\n"
    )
    result = upload(good)
    assert result.status_code == 201, result.content
    assert result.json()["saved"] == 2
    assert [(r["line"], r["reason"][:20]) for r in result.json()["rejected"]] == [
        (4, "The intent must be 1"),
        (5, "The answer must be 1"),
        (6, "'card_arrival' was a"),
        (7, "More fields than the"),
    ]
    answers = dict(AnswerTemplate.objects.for_org(organisation).values_list("intent", "body"))
    assert answers == {"card_arrival": "Cards take 3 days.", "change_pin": 'At any ATM, choose "Change PIN".'}

    for data, message in [
        (b"", "The submitted file is empty."),  # refused by the API before the service
        (b"intent,text\nx,y\n", "The header must be exactly intent,answer"),
        ("intent,answer\nx,caf\u00e9\n".encode("latin-1"), "not UTF-8"),
        (b"intent,answer\n,\n", "No usable rows"),
    ]:
        refused = upload(data)
        assert refused.status_code == 400 and message in refused.json()["error"]["message"], refused.content
    assert dict(AnswerTemplate.objects.for_org(organisation).values_list("intent", "body")) == answers


@pytest.mark.django_db
def test_historical_qa_upload_over_the_api(make_org, make_member, user_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    organisation, owner = make_org()
    client = user_client(owner)

    def upload(who, data: bytes, **extra):
        return who.post(
            f"{BASE}/qa/import", {"file": SimpleUploadedFile("qa.csv", data), **extra}, format="multipart"
        )

    data = b'question,answer\nDo you ship abroad?,"Yes, to 30 countries."\nDo you ship abroad?,Twice\n'
    operator = user_client(make_member(organisation, Role.OPERATOR))
    assert upload(operator, data).status_code == 403
    done = upload(client, data, train="false")
    assert done.status_code == 201, done.content
    assert done.json() == {
        "articles": 1,
        "rejected": [{"line": 3, "reason": "'Do you ship abroad?' was already given on an earlier line."}],
        "job": None,
    }
    assert Article.objects.for_org(organisation).get().title == "Do you ship abroad?"
    bad = upload(client, b"question;answer\nx;y\n")
    assert (
        bad.status_code == 400 and "header must be exactly question,answer" in bad.json()["error"]["message"]
    )
    assert Article.objects.for_org(organisation).count() == 1
