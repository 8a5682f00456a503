"""The inbox operators work in: status and assignment filters, search, internal notes (never to the visitor),
saved replies, assignment (members only), unread counts, the visitor's page and earlier conversations, and
another organisation's rows refused everywhere."""

import pytest
from asgiref.sync import sync_to_async

from core.asgi import application
from core.errors import InvalidInput
from core.tenancy.models import Role
from customer_service import selectors, services
from customer_service.models import Conversation, ConversationStatus, InternalNote, Message, Sender
from tests.customer_service.conftest import member_headers
from tests.customer_service.test_sockets import _receive_until
from tests.sockets import Socket, run_sockets

BASE = "/api/customer-service"
SITE = "https://shop.example.com"
VISITOR = "v_0123456789abcdefXYZ"


def _chat(organisation, *texts: str, page: str = "", visitor: str = ""):
    bot = services.bot_settings_for(organisation=organisation)
    conversation, _token, _greeting = services.conversation_start(
        bot=bot, origin=SITE, page=page, visitor=visitor
    )
    for text in texts:
        services.visitor_message(conversation=conversation, text=text)
    return Conversation.objects.for_org(organisation).get(pk=conversation.pk)


@pytest.fixture
def team(make_org, make_member):
    organisation, owner = make_org()
    sam = make_member(organisation, Role.OPERATOR)
    lee = make_member(organisation, Role.OPERATOR)
    viewer = make_member(organisation, Role.VIEWER)
    other, other_owner = make_org()
    return organisation, owner, sam, lee, viewer, other, other_owner


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [c["id"] for c in response.json()["results"]]


@pytest.mark.django_db
def test_status_and_assignment_filters_newest_activity_first(team, user_client):
    organisation, _owner, sam, lee, _viewer, other, _other_owner = team
    with_bot = _chat(organisation)  # the greeting only: the bot has it
    waiting = _chat(organisation, "Talk to a human about my invoice please")
    mine = _chat(organisation, "Talk to a human, my invoice is wrong")
    services.conversation_take_over(organisation=organisation, conversation_id=mine.pk, user=sam)
    lees = _chat(organisation, "A human please: my refund")
    services.conversation_take_over(organisation=organisation, conversation_id=lees.pk, user=lee)
    closed = _chat(organisation, "Thanks, bye")
    services.conversation_close(conversation=closed, by="the visitor")
    theirs = _chat(other, "Talk to a human about my invoice")
    client = user_client(sam)
    url = f"{BASE}/conversations/"

    assert _ids(client.get(url)) == [closed.pk, lees.pk, mine.pk, waiting.pk, with_bot.pk]  # newest activity
    assert _ids(client.get(url, {"status": "waiting"})) == [waiting.pk]
    assert _ids(client.get(url, {"status": "bot"})) == [with_bot.pk]
    assert _ids(client.get(url, {"status": "closed"})) == [closed.pk]
    assert _ids(client.get(url, {"status": "open"})) == [waiting.pk, lees.pk, mine.pk, with_bot.pk]
    assert _ids(client.get(url, {"assigned": "me"})) == [mine.pk]
    assert _ids(client.get(url, {"assigned": str(lee.pk)})) == [lees.pk]
    assert _ids(client.get(url, {"status": "open", "assigned": "none"})) == [waiting.pk, with_bot.pk]
    # search over the messages' text, with the filters
    assert _ids(client.get(url, {"q": "INVOICE"})) == [mine.pk, waiting.pk]
    assert _ids(client.get(url, {"q": "invoice", "status": "waiting"})) == [waiting.pk]
    assert _ids(client.get(url, {"q": "invoice", "assigned": "me"})) == [mine.pk]
    assert theirs.pk not in _ids(client.get(url, {"q": "invoice", "page_size": 200}))
    bad = client.get(url, {"assigned": "everyone"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "assigned"
    assert "me, none or an operator" in bad.json()["error"]["message"]


@pytest.mark.django_db
def test_unread_counts_follow_what_operators_have_seen(team, user_client):
    organisation, _owner, sam, _lee, _viewer, other, other_owner = team
    conversation = _chat(organisation, "My card does not work", "Talk to a human please")
    client = user_client(sam)
    listed = client.get(f"{BASE}/conversations/", {"status": "waiting"}).json()["results"]
    assert [c["unread"] for c in listed] == [2]

    detail = client.get(f"{BASE}/conversations/{conversation.pk}/").json()
    assert detail["unread"] == 2
    last = detail["messages"][-1]["id"]
    seen = client.post(f"{BASE}/conversations/{conversation.pk}/seen/", {"message": last}, format="json")
    assert seen.status_code == 200 and seen.json()["unread"] == 0

    services.visitor_message(conversation=conversation, text="Hello? still there?")
    assert selectors.conversation_get(organisation=organisation, conversation_id=conversation.pk).unread == 1
    first = detail["messages"][0]["id"]  # an older mark never moves it back
    client.post(f"{BASE}/conversations/{conversation.pk}/seen/", {"message": first}, format="json")
    assert client.get(f"{BASE}/conversations/{conversation.pk}/").json()["unread"] == 1

    elsewhere = _chat(organisation, "another chat")
    wrong = client.post(f"{BASE}/conversations/{elsewhere.pk}/seen/", {"message": last}, format="json")
    assert wrong.status_code == 404 and "No such message" in wrong.json()["error"]["message"]
    bad = client.post(f"{BASE}/conversations/{conversation.pk}/seen/", {"message": "last"}, format="json")
    assert bad.status_code == 400
    stranger = user_client(other_owner)
    refused = stranger.post(f"{BASE}/conversations/{conversation.pk}/seen/", {"message": last}, format="json")
    assert refused.status_code == 404


@pytest.mark.django_db
def test_notes_for_operators_and_another_organisations_conversation_is_404(team, user_client):
    organisation, _owner, sam, _lee, viewer, other, other_owner = team
    conversation = _chat(organisation, "Talk to a human please")
    client = user_client(sam)
    url = f"{BASE}/conversations/{conversation.pk}/notes/"
    added = client.post(url, {"text": "VIP customer: offer the refund"}, format="json")
    assert added.status_code == 201 and added.json()["author"] == sam.email
    detail = client.get(f"{BASE}/conversations/{conversation.pk}/").json()
    assert [n["text"] for n in detail["notes"]] == ["VIP customer: offer the refund"]
    assert "VIP" not in str(detail["messages"])  # a note is not a message
    found = client.get(f"{BASE}/conversations/", {"q": "vip CUSTOMER"}).json()["results"]
    assert [c["id"] for c in found] == [conversation.pk]  # operators find their notes
    assert user_client(other_owner).get(f"{BASE}/conversations/", {"q": "vip"}).json()["count"] == 0
    assert [n["text"] for n in client.get(url).json()] == ["VIP customer: offer the refund"]
    assert client.post(url, {"text": "   "}, format="json").status_code == 400
    too_long = client.post(url, {"text": "x" * 5001}, format="json")
    assert too_long.status_code == 400 and "text" in too_long.json()["error"]["details"]
    assert user_client(viewer).post(url, {"text": "hi"}, format="json").status_code == 403

    stranger = user_client(other_owner)
    for method, path, body in [
        ("get", f"/conversations/{conversation.pk}/", None),
        ("get", f"/conversations/{conversation.pk}/notes/", None),
        ("post", f"/conversations/{conversation.pk}/notes/", {"text": "mine now"}),
        ("post", f"/conversations/{conversation.pk}/assign/", {"operator": other_owner.pk}),
    ]:
        response = getattr(stranger, method)(BASE + path, body, format="json")
        assert response.status_code == 404, (path, response.content)
    assert InternalNote.objects.for_org(organisation).count() == 1
    assert not InternalNote.objects.for_org(other).exists()


@pytest.mark.django_db
def test_saved_replies_crud_per_organisation(team, user_client):
    organisation, _owner, sam, lee, viewer, _other, other_owner = team
    client = user_client(sam)
    url = f"{BASE}/saved-replies/"
    made = client.post(url, {"title": "Refund", "body": "Your refund is on its way."}, format="json")
    assert made.status_code == 201
    reply_id = made.json()["id"]
    client.post(url, {"title": "Opening hours", "body": "We are open 9 to 5."}, format="json")
    assert [r["title"] for r in user_client(lee).get(url).json()["results"]] == ["Opening hours", "Refund"]
    assert [r["title"] for r in client.get(url, {"q": "ON ITS WAY"}).json()["results"]] == ["Refund"]

    dup = client.post(url, {"title": "refund", "body": "again"}, format="json")
    assert dup.status_code == 400 and "exists already" in dup.json()["error"]["message"]
    empty = client.post(url, {"title": "Empty", "body": ""}, format="json")
    assert empty.status_code == 400 and "body" in empty.json()["error"]["details"]
    changed = client.put(
        f"{url}{reply_id}/", {"title": "Refund", "body": "Refunds take 3 days."}, format="json"
    )
    assert changed.status_code == 200 and changed.json()["body"] == "Refunds take 3 days."
    assert client.get(f"{url}{reply_id}/").json()["body"] == "Refunds take 3 days."
    assert user_client(viewer).get(url).status_code == 403

    stranger = user_client(other_owner)
    assert stranger.get(url).json()["count"] == 0
    assert stranger.get(f"{url}{reply_id}/").status_code == 404
    assert stranger.put(f"{url}{reply_id}/", {"title": "x", "body": "y"}, format="json").status_code == 404
    assert stranger.delete(f"{url}{reply_id}/").status_code == 404
    assert client.delete(f"{url}{reply_id}/").status_code == 204
    assert client.delete(f"{url}{reply_id}/").status_code == 404


@pytest.mark.django_db
def test_assignment_to_members_who_operate_only(team, user_client, make_member):
    organisation, owner, sam, lee, viewer, other, other_owner = team
    outsider = make_member(other, Role.OPERATOR)
    conversation = _chat(organisation, "Talk to a human please")
    url = f"{BASE}/conversations/{conversation.pk}/assign/"
    client = user_client(sam)
    operators = client.get(f"{BASE}/operators/").json()
    assert {o["email"] for o in operators} == {owner.email, sam.email, lee.email}  # not the viewer
    theirs = user_client(other_owner).get(f"{BASE}/operators/").json()
    assert {o["email"] for o in theirs} == {other_owner.email, outsider.email}

    for who, message in [
        (outsider.pk, "members of this organisation only"),
        (other_owner.pk, "members of this organisation only"),
        (viewer.pk, "only owners, admins and operators"),
        ("sam", "valid integer"),
    ]:
        refused = client.post(url, {"operator": who}, format="json")
        assert refused.status_code == 400 and message in refused.json()["error"]["message"], who
    assert Conversation.objects.for_org(organisation).get(pk=conversation.pk).assigned_to is None

    assigned = client.post(url, {"operator": lee.pk}, format="json")
    assert assigned.status_code == 200 and assigned.json()["assigned_to"] == lee.email
    assert assigned.json()["status"] == "waiting"  # assigned, not yet taken over
    services.conversation_take_over(organisation=organisation, conversation_id=conversation.pk, user=lee)
    taken = client.post(url, {"operator": sam.pk}, format="json")  # Lee handles it: Sam may not move it
    assert taken.status_code == 409 and "only they or an admin" in taken.json()["error"]["message"]
    moved = user_client(owner).post(url, {"operator": sam.pk}, format="json")  # an admin may
    assert moved.status_code == 200 and moved.json()["assigned_to"] == sam.email
    assert moved.json()["status"] == "operator"
    last = Message.objects.for_org(organisation).filter(conversation=conversation).last()
    assert last.sender == Sender.SYSTEM and "joined the conversation" in last.text
    back = client.post(url, {"operator": None}, format="json")  # Sam lets it go: it waits again
    assert back.json()["status"] == "waiting" and back.json()["assigned_to"] is None


@pytest.mark.django_db
def test_the_visitors_page_and_earlier_conversations(team, user_client):
    organisation, _owner, sam, _lee, _viewer, other, _other_owner = team
    earlier = _chat(organisation, "Where is my order?", page=f"{SITE}/orders", visitor=VISITOR)
    services.conversation_close(conversation=earlier, by="the visitor")
    by_email = _chat(organisation, "Talk to a human please", "jane@example.com")
    assert by_email.visitor_email == "jane@example.com"
    _chat(other, "Talk to a human please", "jane@example.com", visitor=VISITOR)  # another shop's visitor
    now = _chat(
        organisation, "Talk to a human please", "Jane@Example.com", page=f"{SITE}/cart", visitor=VISITOR
    )
    stranger = _chat(organisation, "hello", visitor="v_someone-else-entirely")

    detail = user_client(sam).get(f"{BASE}/conversations/{now.pk}/").json()
    assert detail["page_url"] == f"{SITE}/cart"
    assert [c["id"] for c in detail["visitor_conversations"]] == [by_email.pk, earlier.pk]
    assert detail["visitor_conversations"][1]["preview"] == "Where is my order?"
    alone = user_client(sam).get(f"{BASE}/conversations/{stranger.pk}/").json()
    assert alone["visitor_conversations"] == []

    bot = services.bot_settings_for(organisation=organisation)
    for page, visitor in [("javascript:alert(1)", ""), ("x" * 501, ""), ("", "short"), (["a"], "")]:
        with pytest.raises(InvalidInput) as refused:
            services.conversation_start(bot=bot, page=page, visitor=visitor)
        assert refused.value.details["field"] == ("page" if page else "visitor")


@pytest.mark.django_db(transaction=True)
def test_notes_never_reach_the_visitors_socket(make_org, make_member):
    organisation, _owner = make_org()
    operator = make_member(organisation, Role.OPERATOR)
    _other, other_owner = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    secret = "Internal: this visitor was rude last week"

    async def scenario():
        inbox = Socket(application, "/ws/inbox/", headers=await sync_to_async(member_headers)(operator))
        assert (await inbox.connect())[0]
        strangers = Socket(
            application, "/ws/inbox/", headers=await sync_to_async(member_headers)(other_owner)
        )
        assert (await strangers.connect())[0]
        widget = Socket(application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", SITE.encode())])
        assert (await widget.connect())[0]
        await widget.send_json_to({"type": "start", "page": "ftp://x/"})
        refused = await widget.receive_json_from()
        assert refused["type"] == "error" and "page must be" in refused["error"]["message"]
        await widget.send_json_to({"type": "start", "page": f"{SITE}/pricing", "visitor": VISITOR})
        started = await _receive_until(widget, "conversation")
        await _receive_until(widget, "message")  # greeting
        await widget.send_json_to({"type": "message", "text": "Talk to a human please"})
        await _receive_until(inbox, "cs.message")
        conversation = await sync_to_async(lambda: Conversation.objects.for_org(organisation).get())()
        assert conversation.page_url == f"{SITE}/pricing"
        await sync_to_async(services.conversation_take_over)(
            organisation=organisation, conversation_id=conversation.pk, user=operator
        )
        seen = []  # what the visitor is meant to see (the hand-off, the operator joining), until quiet
        while "joined the conversation" not in str(seen) or not await widget.receive_nothing(timeout=0.3):
            seen.append(await widget.receive_json_from(timeout=5))
        await sync_to_async(services.note_add)(
            organisation=organisation, conversation_id=conversation.pk, user=operator, text=secret
        )
        note = await _receive_until(inbox, "cs.note")
        assert note["data"]["text"] == secret
        assert await widget.receive_nothing(timeout=0.5)  # the visitor's socket got nothing of it
        await widget.disconnect()

        # on another page the widget resumes: the page moves, the replayed history has no note
        again = Socket(application, f"/ws/chat/{bot.widget_key}/", headers=[(b"origin", SITE.encode())])
        assert (await again.connect())[0]
        await again.send_json_to(
            {
                "type": "resume",
                "conversation": started["data"]["id"],
                "token": started["data"]["token"],
                "page": f"{SITE}/checkout",
            }
        )
        frames = [await again.receive_json_from()]
        while not await again.receive_nothing(timeout=0.5):  # the replayed history, to its end
            frames.append(await again.receive_json_from())
        assert secret not in str(frames) and "rude" not in str(frames)
        assert any("joined the conversation" in str(f) for f in frames)
        moved = await _receive_until(inbox, "cs.conversation")
        while moved["data"]["page_url"] != f"{SITE}/checkout":
            moved = await _receive_until(inbox, "cs.conversation")
        await again.disconnect()
        assert await strangers.receive_nothing(timeout=0.3)  # another organisation's inbox heard nothing
        await strangers.disconnect()
        await inbox.disconnect()

    run_sockets(scenario)
    conversation = Conversation.objects.for_org(organisation).get()
    assert conversation.page_url == f"{SITE}/checkout" and conversation.status == ConversationStatus.OPERATOR
    assert conversation.visitor_hash and VISITOR not in conversation.visitor_hash
