"""Support analytics: exact figures from conversations built here (timestamps, ratings, hand-offs, operator
replies), the date range's rules, the CSV export, unanswered questions grouped by meaning with the real
shared embedder, and tenant isolation of the page, the API and the CSV."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client

from core.tenancy.models import Role
from customer_service import services
from customer_service.models import (
    AnswerSource,
    AnswerTemplate,
    Conversation,
    ConversationStatus,
    Message,
    Sender,
)
from customer_service.services import analytics, unanswered

pytestmark = pytest.mark.django_db
RANGE = {"from": "2026-03-01", "to": "2026-03-03"}


def _at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def _conversation(organisation, start: datetime, messages, *, closed_after=None, rating=None, reason=""):
    """A conversation started at ``start`` with ``messages``: (minutes after start, sender, source, text,
    intent); closed ``closed_after`` minutes after the start (None: still open)."""
    status = ConversationStatus.CLOSED if closed_after is not None else ConversationStatus.BOT
    if closed_after is None and any(m[2] == AnswerSource.HANDOFF for m in messages):
        status = ConversationStatus.WAITING
    conversation = Conversation.all_tenants.create(
        organisation=organisation,
        token_hash="x",
        status=status,
        rating=rating,
        handoff_reason=reason,
        closed_at=start + timedelta(minutes=closed_after) if closed_after is not None else None,
    )
    Conversation.all_tenants.filter(pk=conversation.pk).update(created_at=start)
    for minutes, sender, source, text, intent in messages:
        message = Message.all_tenants.create(
            organisation=organisation,
            conversation=conversation,
            sender=sender,
            source=source,
            text=text,
            intent=intent,
        )
        Message.all_tenants.filter(pk=message.pk).update(created_at=start + timedelta(minutes=minutes))
    return conversation


def _bot(minutes, intent, text="An answer."):
    return (minutes, Sender.BOT, AnswerSource.TEMPLATE, text, intent)


def _visitor(minutes, text="A question?", intent=""):
    return (minutes, Sender.VISITOR, AnswerSource.NONE, text, intent)


def _handoff(minutes):
    return (minutes, Sender.SYSTEM, AnswerSource.HANDOFF, "Let me connect you.", "")


def _operator(minutes):
    return (minutes, Sender.OPERATOR, AnswerSource.OPERATOR, "Hello, I can help.", "")


def _build(organisation):
    """Seven conversations from 1 to 3 March 2026 in Berlin (UTC+1), and two just outside."""
    bot = services.bot_settings_for(organisation=organisation)
    bot.timezone = "Europe/Berlin"
    bot.save()
    # 1 March: the bot alone, rated 5
    _conversation(organisation, _at(1, 9), [_visitor(0), _bot(0, "card_arrival")], closed_after=10, rating=5)
    # 23:30 UTC on 1 March is 00:30 on 2 March in Berlin: the bot alone, rated 4
    _conversation(
        organisation,
        _at(1, 23, 30),
        [_visitor(0), _bot(0, "card_arrival"), _visitor(1), _bot(1, "change_pin")],
        closed_after=5,
        rating=4,
    )
    # 2 March: asked for a person; the operator answers 2 minutes after the hand-off, closed after 30
    _conversation(
        organisation,
        _at(2, 10),
        [_visitor(0, "I want a human"), _handoff(1), _operator(3)],
        closed_after=30,
        rating=2,
        reason="The visitor asked for a person.",
    )
    # 2 March: not sure; the operator answers after 10 minutes, closed after an hour, not rated
    _conversation(
        organisation,
        _at(2, 12),
        [_visitor(0), _handoff(0), _operator(10)],
        closed_after=60,
        reason="Not sure: 'card_arrival' at 0.40 (threshold 0.50).",
    )
    # 3 March: no answer for the intent, still waiting for a person
    _conversation(
        organisation,
        _at(3, 8),
        [_visitor(0), _handoff(0)],
        reason="No answer template for 'refund' and no article matches.",
    )
    # 3 March: with the bot, open
    _conversation(organisation, _at(3, 9), [_visitor(0), _bot(0, "card_arrival")])
    # 3 March: an operator took it over without a hand-off and closed it after 20 minutes
    _conversation(organisation, _at(3, 10), [_visitor(0), _operator(2)], closed_after=20)
    # Outside: 22:00 UTC on 28 February is still 28 February in Berlin; 23:30 UTC on 3 March is 4 March
    _conversation(organisation, _at(28, 22, month=2), [_visitor(0), _bot(0, "x")], closed_after=1, rating=1)
    _conversation(organisation, _at(3, 23, 30), [_visitor(0), _bot(0, "x")], closed_after=1, rating=1)


EXPECTED_DAILY = [
    {
        "date": "2026-03-01",
        "conversations": 1,
        "closed": 1,
        "automated": 1,
        "handed_off": 0,
        "rated": 1,
        "rated_4_or_5": 1,
        "mean_rating": 5.0,
    },
    {
        "date": "2026-03-02",
        "conversations": 3,
        "closed": 3,
        "automated": 1,
        "handed_off": 2,
        "rated": 2,
        "rated_4_or_5": 1,
        "mean_rating": 3.0,
    },
    {
        "date": "2026-03-03",
        "conversations": 3,
        "closed": 1,
        "automated": 0,
        "handed_off": 2,
        "rated": 0,
        "rated_4_or_5": 0,
        "mean_rating": None,
    },
]


def _check_figures(figures):
    assert figures["from"] == "2026-03-01" and figures["to"] == "2026-03-03"
    assert figures["timezone"] == "Europe/Berlin"
    assert (figures["conversations"], figures["closed"], figures["automated"]) == (7, 5, 2)
    assert figures["automation_rate"] == pytest.approx(2 / 5)
    assert figures["handed_off"] == 4 and figures["handoff_rate"] == pytest.approx(4 / 7)
    assert figures["handoff_reasons"] == [
        {"reason": "No answer for the intent", "count": 1},
        {"reason": "Not sure of the intent", "count": 1},
        {"reason": "Taken over by an operator", "count": 1},
        {"reason": "The visitor asked for a person", "count": 1},
    ]
    # first response: 120 s and 600 s; resolution (a person handled it): 1800, 3600 and 1200 s
    assert figures["first_response"] == {"count": 2, "median_s": 360.0, "p90_s": pytest.approx(552.0)}
    assert figures["resolution"] == {"count": 3, "median_s": 1800.0, "p90_s": pytest.approx(3240.0)}
    assert figures["csat"]["rated"] == 3 and figures["csat"]["satisfied"] == 2
    assert figures["csat"]["score"] == pytest.approx(2 / 3) and figures["csat"]["mean"] == pytest.approx(
        11 / 3
    )
    assert [(i["intent"], i["count"]) for i in figures["intents"]] == [("card_arrival", 3), ("change_pin", 1)]
    assert figures["daily"] == EXPECTED_DAILY


def _login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_figures_from_built_conversations_and_isolated_from_another_org(
    make_org, user_client, make_key, key_client
):
    organisation, owner = make_org()
    other, other_owner = make_org()
    _build(organisation)
    # another organisation's conversation the same day, handed off and badly rated: never counted above
    _conversation(
        other,
        _at(2, 11),
        [_visitor(0, "Where is my parcel?"), _handoff(0), _operator(1)],
        closed_after=3,
        rating=1,
    )
    period = analytics.analytics_period(
        organisation=organisation, date_from="2026-03-01", date_to="2026-03-03"
    )
    _check_figures(analytics.support_analytics(organisation=organisation, period=period))

    answer = user_client(owner).get("/api/customer-service/analytics", RANGE)
    assert answer.status_code == 200
    _check_figures(answer.json())
    # the other organisation's owner sees only its own conversation (its days in UTC)
    theirs = user_client(other_owner).get("/api/customer-service/analytics", RANGE).json()
    assert (theirs["conversations"], theirs["handed_off"], theirs["csat"]["rated"]) == (1, 1, 1)
    assert theirs["first_response"]["median_s"] == 60.0
    assert [c["examples"] for c in theirs["unanswered"]] == [["Where is my parcel?"]]
    # an API key reads the figures; visitors' texts only with the scope that reads conversations
    _key, secret = make_key(organisation, scopes=("read",))
    read_only = key_client(secret).get("/api/customer-service/analytics", RANGE).json()
    assert read_only["conversations"] == 7 and read_only["unanswered"] is None
    _key, secret = make_key(organisation, scopes=("read", "admin"))
    admin = key_client(secret).get("/api/customer-service/analytics", RANGE).json()
    assert sum(c["count"] for c in admin["unanswered"]) == 2  # the questions before the two hand-offs


BAD_RANGES = [
    ({"from": "2026-03-05", "to": "2026-03-01"}, "The start (2026-03-05) is after the end (2026-03-01)."),
    ({"from": "March 1st"}, "'March 1st' is not a date: write it as YYYY-MM-DD."),
    ({"from": "2025-01-01", "to": "2026-01-02"}, "The range is 367 days: choose at most 366."),
    ({"to": "1999-12-31"}, "Give a date between the years 2000 and 2999."),
]


def test_bad_dates_are_refused_with_a_message(make_org, user_client):
    organisation, owner = make_org()
    api, client = user_client(owner), _login(owner)
    for query, message in BAD_RANGES:
        answer = api.get("/api/customer-service/analytics", query)
        assert answer.status_code == 400 and answer.json()["error"]["message"] == message
        page = client.get("/customer-service/analytics/", query)
        assert page.status_code == 400 and message.replace("'", "&#x27;") in page.text
        assert 'id="range-errors"' in page.text and 'id="n-conversations"' not in page.text
        export = client.get("/customer-service/analytics.csv", query)
        assert export.status_code == 400 and export.json()["error"]["message"] == message
    # 366 days is allowed
    assert (
        api.get("/api/customer-service/analytics", {"from": "2025-01-01", "to": "2026-01-01"}).status_code
        == 200
    )


def test_default_range_is_the_last_30_days_in_the_bots_time_zone(make_org):
    organisation, _ = make_org()
    bot = services.bot_settings_for(organisation=organisation)
    bot.timezone = "Pacific/Kiritimati"  # UTC+14: "today" there is often tomorrow in UTC
    bot.save()
    period = analytics.analytics_period(organisation=organisation)
    today = datetime.now(period.zone).date()
    assert (period.start, period.end) == (today - timedelta(days=29), today)
    assert analytics.analytics_period(organisation=organisation, date_to="2026-03-31").start.isoformat() == (
        "2026-03-02"
    )


def test_page_and_csv_show_the_figures_and_only_the_org_own(make_org, make_member):
    organisation, owner = make_org()
    other, other_owner = make_org()
    _build(organisation)
    client = _login(owner)
    page = client.get("/customer-service/analytics/", RANGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert '<strong id="n-conversations">7</strong>' in html
    assert '<strong id="automation-rate">40%</strong>' in html and '<strong id="csat">67%</strong>' in html
    assert "median <strong>6 min</strong>" in html and "vendor/chartjs/chart.umd.min.js" in html
    assert 'href="/customer-service/analytics/">Support analytics</a>' in html  # in the product's navigation

    export = client.get("/customer-service/analytics.csv", RANGE)
    assert export.status_code == 200 and export["Content-Type"].startswith("text/csv")
    assert export.content.decode() == (
        "date,conversations,closed,automated,handed_off,rated,rated_4_or_5,mean_rating\n"
        "2026-03-01,1,1,1,0,1,1,5.00\n"
        "2026-03-02,3,3,1,2,2,1,3.00\n"
        "2026-03-03,3,1,0,2,0,0,\n"
    )
    # another organisation's page and CSV count none of these
    theirs = _login(other_owner)
    assert '<strong id="n-conversations">0</strong>' in theirs.get("/customer-service/analytics/", RANGE).text
    assert theirs.get("/customer-service/analytics.csv", RANGE).content.decode().splitlines()[1:] == [
        "2026-03-01,0,0,0,0,0,0,",
        "2026-03-02,0,0,0,0,0,0,",
        "2026-03-03,0,0,0,0,0,0,",
    ]
    # a viewer sees the figures, not the visitors' questions
    viewer = _login(make_member(organisation, Role.VIEWER)).get("/customer-service/analytics/", RANGE)
    assert viewer.status_code == 200 and "Visitors' questions are shown to operators" in viewer.text
    assert 'id="unanswered"' not in viewer.text


def _unanswered(organisation, text, reply=AnswerSource.HANDOFF, *, day=2, intent=""):
    reply_message = (0, Sender.BOT, reply, "...", "")
    _conversation(organisation, _at(day, 10), [_visitor(0, text, intent), reply_message])


def test_unanswered_questions_grouped_by_meaning(make_org, make_member):
    organisation, owner = make_org()
    other, _ = make_org()
    for text in ("How do I reset my password?", "I forgot my password, how can I change it?"):
        _unanswered(organisation, text, intent="change_pin")
    _unanswered(organisation, "my password reset link does not work", AnswerSource.REPHRASE)
    for text in ("Do you ship to Canada?", "Can you deliver my order to Canada?"):
        _unanswered(organisation, text)
    # suggestions the visitor turned down: unanswered too
    conversation = _conversation(
        organisation,
        _at(2, 11),
        [_visitor(0, "Is international shipping to Canada available?")],
    )
    Message.all_tenants.create(
        organisation=organisation,
        conversation=conversation,
        sender=Sender.BOT,
        source=AnswerSource.SUGGESTIONS,
        text="Did you mean?",
        suggestions={"question": 0, "options": [], "chosen": "none"},
    )
    _unanswered(organisation, "What is your office address in Berlin?")
    # not unanswered: answered by a template, a request for a person, outside the range, another org's
    _unanswered(organisation, "How do I reset my PIN?", AnswerSource.TEMPLATE)
    _unanswered(organisation, "Can I talk to a human please?")
    _unanswered(organisation, "Password reset again?", day=5)
    _unanswered(other, "Do you ship to Canada and Mexico?")

    period = analytics.analytics_period(
        organisation=organisation, date_from="2026-03-01", date_to="2026-03-03"
    )
    clusters = unanswered.unanswered_clusters(organisation=organisation, period=period)
    groups = sorted((c["count"], sorted(c["examples"]), c["intent"]) for c in clusters)
    assert groups == [
        (1, ["What is your office address in Berlin?"], ""),
        (
            3,
            [
                "Can you deliver my order to Canada?",
                "Do you ship to Canada?",
                "Is international shipping to Canada available?",
            ],
            "",
        ),
        (
            3,
            [
                "How do I reset my password?",
                "I forgot my password, how can I change it?",
                "my password reset link does not work",
            ],
            "change_pin",
        ),
    ]

    # the page offers "add an answer" for each group: a template for the guessed intent, or an article
    client = _login(owner)
    page = client.get("/customer-service/analytics/", RANGE).text
    assert page.count('<li class="cluster"') == 3 and page.count('class="add-answer"') == 3
    assert 'value="change_pin"' in page and 'value="What is your office address in Berlin?"' in page
    saved = client.post(
        "/customer-service/templates/", {"intent": "change_pin", "body": "Reset it under Settings."}
    )
    assert saved.status_code == 302
    assert AnswerTemplate.objects.for_org(organisation).get().body == "Reset it under Settings."
    operator = _login(make_member(organisation, Role.OPERATOR)).get("/customer-service/analytics/", RANGE)
    assert operator.text.count('<li class="cluster"') == 3 and 'class="add-answer"' not in operator.text
