"""The live inbox's history and search: closed conversations stay findable (selector and REST API)."""

import pytest

from core.errors import InvalidInput
from core.tenancy.models import Role
from customer_service import selectors, services

BASE = "/api/customer-service"
JANE = "Hi, I am Jane Roe (jane.roe@example.com): my parcel never arrived"


def _chat(organisation, *texts: str):
    bot = services.bot_settings_for(organisation=organisation)
    conversation, _token, _greeting = services.conversation_start(bot=bot, origin="https://shop.example.com")
    for text in texts:
        services.visitor_message(conversation=conversation, text=text)
    return conversation


@pytest.fixture
def inbox(make_org, make_member):
    """Two closed conversations (Jane's first), one waiting, and another tenant's closed one."""
    organisation, _owner = make_org()
    operator = make_member(organisation, Role.OPERATOR)
    jane = _chat(organisation, JANE, "Please let me talk to a person")
    services.conversation_take_over(organisation=organisation, conversation_id=jane.pk, user=operator)
    services.conversation_close_by_operator(organisation=organisation, conversation_id=jane.pk, user=operator)
    bob = _chat(organisation, "Where is my PARCEL? I want a human")
    services.conversation_close(conversation=bob, by="the visitor")
    waiting = _chat(organisation, "The parcel again: talk to a human please")
    other, _ = make_org()
    theirs = _chat(other, "my parcel, another shop")
    services.conversation_close(conversation=theirs, by="the visitor")
    return organisation, operator, jane, bob, waiting, (other, theirs)


def _ids(qs) -> list[int]:
    return [c.pk for c in qs]


@pytest.mark.django_db
def test_history_is_latest_closed_first_and_search_finds_names_emails_and_text(inbox):
    organisation, operator, jane, bob, waiting, _other = inbox
    history = selectors.conversation_list(organisation=organisation, status="closed")
    assert _ids(history) == [bob.pk, jane.pk]
    assert history[1].preview == JANE  # the visitor's first message, for the list
    search = selectors.conversation_list
    assert _ids(search(organisation=organisation, status="closed", query="parcel")) == [bob.pk, jane.pk]
    assert _ids(search(organisation=organisation, status="closed", query="JANE.ROE@EXAMPLE")) == [jane.pk]
    assert _ids(search(organisation=organisation, status="closed", query=" jane roe ")) == [jane.pk]
    assert _ids(search(organisation=organisation, status="closed", query=f"#{jane.pk}")) == [jane.pk]
    assert _ids(search(organisation=organisation, status="closed", query=operator.email)) == [jane.pk]
    assert _ids(search(organisation=organisation, status="open", query="parcel")) == [waiting.pk]
    assert _ids(search(organisation=organisation, query="parcel")) == [waiting.pk, bob.pk, jane.pk]
    assert _ids(search(organisation=organisation, status="closed", query="100%")) == []  # % is a character
    assert _ids(search(organisation=organisation, status="closed", query="#\u00b2")) == []  # not a number
    assert _ids(search(organisation=organisation, status="closed", query="")) == [bob.pk, jane.pk]


@pytest.mark.django_db
def test_search_input_is_guarded(inbox):
    organisation = inbox[0]
    with pytest.raises(InvalidInput, match="at most 100"):
        selectors.conversation_list(organisation=organisation, query="x" * 101)
    with pytest.raises(InvalidInput, match="NUL"):
        list(selectors.conversation_list(organisation=organisation, query="par\x00cel"))


@pytest.mark.django_db
def test_history_and_search_over_the_api(inbox, user_client, make_member):
    organisation, operator, jane, bob, waiting, (other, other_closed) = inbox
    client = user_client(operator)
    found = client.get(f"{BASE}/conversations/", {"status": "closed", "q": "parcel"})
    assert found.status_code == 200
    body = found.json()
    assert body["count"] == 2 and [c["id"] for c in body["results"]] == [bob.pk, jane.pk]
    assert body["results"][1]["preview"] == JANE and body["results"][1]["closed_at"]
    assert all(c["status"] == "closed" for c in body["results"])
    first = client.get(f"{BASE}/conversations/", {"status": "closed", "q": "parcel", "page_size": 1}).json()
    assert [c["id"] for c in first["results"]] == [bob.pk] and first["next"]
    second = client.get(first["next"]).json()
    assert [c["id"] for c in second["results"]] == [jane.pk] and second["next"] is None
    open_ones = client.get(f"{BASE}/conversations/", {"status": "open", "q": "parcel"}).json()
    assert [c["id"] for c in open_ones["results"]] == [waiting.pk]
    transcript = client.get(f"{BASE}/conversations/{jane.pk}/").json()  # a closed transcript still reads
    assert transcript["status"] == "closed" and JANE in [m["text"] for m in transcript["messages"]]

    stranger = user_client(make_member(other, Role.OPERATOR))
    theirs = stranger.get(f"{BASE}/conversations/", {"status": "closed", "q": "parcel"}).json()
    assert [c["id"] for c in theirs["results"]] == [other_closed.pk]
    assert stranger.get(f"{BASE}/conversations/", {"q": f"#{jane.pk}"}).json()["count"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "lost"}, "status"),
        ({"status": "closed", "q": "x" * 101}, "q"),
        ({"status": "closed", "q": "par\x00cel"}, "q"),
    ],
)
def test_bad_filters_are_a_400_in_the_json_error_shape(inbox, user_client, params, field):
    response = user_client(inbox[1]).get(f"{BASE}/conversations/", params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and error["details"]["field"] == field and error["message"]
