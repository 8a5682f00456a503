"""The monitor's pages: dashboard charts (per topic, per watch-list entry, hour and day buckets), the live
feed (its JSON and its socket, tenant-scoped), the drill-down's filters and pages, the CSV export (streamed,
formula-safe, tenant-scoped) and analysts' corrections from the drill-down, with roles and tenants."""

import csv
import io
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import Client
from django.utils import timezone

from core.tenancy.models import Role
from finance_monitor.models import Alert, AlertEvidence, AlertRule, Document, TrendBucket
from finance_monitor.services import dashboard, entities
from finance_monitor.services import documents as docs
from finance_monitor.services.trends import bucket_start, document_classified
from tests.conftest import PASSWORD
from tests.finance_monitor.planting import NEG, NEU
from tests.sockets import Socket, run_sockets

POS = {"positive": 0.8, "neutral": 0.15, "negative": 0.05}


def login(user) -> Client:
    client = Client()
    assert client.login(username=user.email, password=PASSWORD)
    return client


def put(organisation, texts, topic, probabilities, when=None, source="API"):
    """Documents ingested into ``source`` and classified as given; their ids."""
    src = docs.source_for(organisation=organisation, kind="api", name=source)
    items = [docs.DocumentIn(text=t, published_at=when) for t in texts]
    ids = docs.documents_ingest(organisation=organisation, items=items, source=src).created
    for document_id in ids:
        document_classified(
            organisation=organisation, document_id=document_id, topic=topic, probabilities=probabilities
        )
    return ids


@pytest.fixture
def monitor(make_org):
    organisation, owner = make_org()
    apple = entities.entity_save(organisation=organisation, kind="company", name="Apple", ticker="AAPL")
    now = timezone.now()
    put(organisation, [f"$AAPL slides on weak demand, note {i}" for i in range(3)], "stocks", NEG, now)
    put(organisation, [f"Fed holds rates, statement {i}" for i in range(4)], "macro", NEU, now)
    put(
        organisation,
        ['=HYPERLINK("http://evil","x")', "-5% drop in futures", "@SUM(A1:A9) guidance"],
        "stocks",
        POS,
        now - timedelta(days=2),
        source="Wire",
    )
    return organisation, owner, apple


def test_dashboard_charts_by_topic_and_watchlist_in_hour_and_day_buckets(monitor, make_org):
    organisation, owner, apple = monitor
    client = login(owner)
    answer = client.get("/finance-monitor/")
    assert answer.status_code == 200
    chart = answer.context["chart"]
    assert len(chart["labels"]) == 48 and chart["volume"][-1] == 7 and sum(chart["volume"]) == 7
    assert chart["negative_share"][-1] == pytest.approx(3 / 7, abs=1e-4)
    assert chart["negative_share"][0] is None
    topics = answer.context["topics_chart"]
    assert [s["topic"] for s in topics["series"]] == ["macro", "stocks"]
    assert topics["series"][1]["volume"][-1] == 3
    assert b'id="chart-data"' in answer.content and b"chart.umd.min.js" in answer.content
    # the form shows what the chart draws: 48 hourly buckets, not the select's first option
    assert b'<option value="48" selected>' in answer.content
    assert b'<option value="hour" selected>' in answer.content
    # a source's last poll is a feed's; a pushed source shows its last document
    assert b"Last poll or document" in answer.content and b"(last document)" in answer.content
    # by watch-list entry, per day over 30 days: the two-day-old positive documents count in their day
    answer = client.get(f"/finance-monitor/?series=entity:{apple.pk}&granularity=day&span=30")
    chart = answer.context["chart"]
    assert chart["target"] == "Watch-list: Apple" and chart["volume"][-1] == 3
    assert chart["negative_share"][-1] == 1.0 and chart["mean_score"][-1] == pytest.approx(-0.75)
    day = client.get("/finance-monitor/?series=topic:stocks&granularity=day&span=30").context["chart"]
    assert day["volume"][-3:] == [3, 0, 3] and day["positive_share"][-3] == 1.0
    # bad choices: a clear form error, 400; another organisation's entry is not a choice here
    other, other_owner = make_org()
    theirs = entities.entity_save(organisation=other, kind="company", name="Tesla", ticker="TSLA")
    answer = client.get("/finance-monitor/?granularity=day&span=48")
    assert answer.status_code == 400 and b"one of: 30, 90, 365" in answer.content
    assert client.get(f"/finance-monitor/?series=entity:{theirs.pk}").status_code == 400
    # the other organisation sees none of it
    mine = login(other_owner).get("/finance-monitor/")
    assert sum(mine.context["chart"]["volume"]) == 0 and mine.context["feed"] == []


def test_live_feed_json_and_socket_are_tenant_scoped(monitor, make_org, transactional_db):
    organisation, owner, _ = monitor
    other, other_owner = make_org()
    feed = login(owner).get("/finance-monitor/feed/").json()["documents"]
    assert len(feed) == 10 and {d["topic"] for d in feed} == {"stocks", "macro"}
    assert login(other_owner).get("/finance-monitor/feed/").json() == {"documents": []}

    from core.asgi import application

    def headers(user):
        client = login(user)
        return [
            (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
            (b"origin", b"http://localhost"),
        ]

    def classify_one():
        with transaction.atomic():
            [document_id] = put(organisation, ["Apple beats estimates, $AAPL up 5%"], "stocks", POS)
            dashboard.documents_classified_broadcast(organisation=organisation, document_ids=[document_id])
        return document_id

    async def scenario():
        path = "/ws/finance-monitor/documents/"
        mine = Socket(application, path, headers=await sync_to_async(headers)(owner))
        theirs = Socket(application, path, headers=await sync_to_async(headers)(other_owner))
        assert (await mine.connect())[0] and (await theirs.connect())[0]
        document_id = await sync_to_async(classify_one)()
        frame = await mine.receive_json_from(timeout=5)
        assert frame["type"] == "fm.documents"
        [item] = frame["data"]["documents"]
        assert item["id"] == document_id and item["sentiment"] == "positive" and item["topic"] == "stocks"
        assert await theirs.receive_nothing(timeout=0.5)
        await mine.disconnect()
        await theirs.disconnect()
        anonymous = Socket(application, path, headers=[(b"origin", b"http://localhost")])
        connected, code = await anonymous.connect()
        assert not connected and code == 4401

    run_sockets(scenario)


def test_drill_down_filters_pages_and_alert_evidence(monitor, make_org, settings):
    organisation, owner, apple = monitor
    client = login(owner)
    shown = client.get("/finance-monitor/documents/")
    assert shown.status_code == 200 and shown.context["page"].paginator.count == 10

    def count(query: str) -> int:
        answer = client.get(f"/finance-monitor/documents/?{query}")
        assert answer.status_code == 200, answer.content[:500]
        return answer.context["page"].paginator.count

    wire = docs.source_for(organisation=organisation, kind="api", name="Wire")
    assert count("topic=stocks") == 6 and count("sentiment=negative") == 3 and count("q=fed+holds") == 4
    assert count(f"source={wire.pk}") == 3 and count(f"entity={apple.pk}") == 3
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert count(f"since={since}") == 7 and count(f"until={since}") == 3
    assert count("topic=stocks&sentiment=positive") == 3
    # pages of 50
    put(organisation, [f"Treasury auction note {i}" for i in range(55)], "bonds", NEU)
    first = client.get("/finance-monitor/documents/?topic=bonds")
    assert len(first.context["page"].object_list) == 50 and b'id="next-page"' in first.content
    second = client.get("/finance-monitor/documents/?topic=bonds&page=2")
    assert len(second.context["page"].object_list) == 5
    # an alert's evidence
    rule = AlertRule.objects.for_org(organisation).create(organisation=organisation, name="r")
    negatives = list(Document.objects.for_org(organisation).filter(sentiment="negative"))
    alert = Alert.objects.for_org(organisation).create(
        organisation=organisation,
        rule=rule,
        kind="share",
        dimension="all",
        granularity="hour",
        bucket_start=bucket_start(timezone.now(), "hour"),
        fired_at=timezone.now(),
        volume=7,
        negative=3,
        observed=0.43,
        baseline=0.1,
        baseline_volume=100,
        p_value=0.001,
        evidence_count=3,
    )
    for d in negatives:
        AlertEvidence.objects.for_org(organisation).create(organisation=organisation, alert=alert, document=d)
    assert count(f"alert={alert.pk}") == 3
    page = client.get("/finance-monitor/alerts/")
    assert f"/finance-monitor/documents/?alert={alert.pk}".encode() in page.content
    # bad filters: clear form errors (400); another organisation's alert or source
    bad = client.get("/finance-monitor/documents/?since=yesterday&topic=nonsense")
    assert bad.status_code == 400 and set(bad.context["form"].errors) == {"since", "topic"}
    backwards = client.get(f"/finance-monitor/documents/?since={since}&until=2020-01-01T00:00")
    assert backwards.status_code == 400 and b"must come after its start" in backwards.content
    other, other_owner = make_org()
    theirs = login(other_owner)
    assert theirs.get(f"/finance-monitor/documents/?alert={alert.pk}").status_code == 404
    assert theirs.get(f"/finance-monitor/documents/?source={wire.pk}").status_code == 400
    assert theirs.get("/finance-monitor/documents/").context["page"].paginator.count == 0


def test_drill_down_shows_copy_counts_links_their_copies_and_hides_them_by_default(monitor, make_org):
    organisation, owner, _ = monitor
    client = login(owner)
    original = Document.objects.for_org(organisation).get(text="Fed holds rates, statement 0")
    retweets = [f"RT @desk{i}: Fed holds rates — statement 0 https://t.co/{i}" for i in range(3)]
    copies = docs.documents_ingest(
        organisation=organisation, items=[docs.DocumentIn(text=t) for t in retweets]
    ).copies
    assert len(copies) == 3

    def listed(query: str = "") -> list[int]:
        answer = client.get(f"/finance-monitor/documents/?{query}")
        assert answer.status_code == 200, answer.content[:500]
        return [d.pk for d in answer.context["page"].object_list]

    shown = client.get("/finance-monitor/documents/")
    assert shown.context["page"].paginator.count == 10 and not set(copies) & set(listed())
    link = f'href="/finance-monitor/documents/?copy_of={original.pk}">3 copies</a>'
    assert link.encode() in shown.content
    assert sorted(listed(f"copy_of={original.pk}")) == sorted(copies)
    of_original = client.get(f"/finance-monitor/documents/?copy_of={original.pk}")
    assert (
        b'id="copies-of"' in of_original.content
        and b"correct" not in of_original.content.split(b"<tbody>")[1]
    )
    assert len(listed("copies=show")) == 13 and sorted(listed("copies=only")) == sorted(copies)
    # the other filters still apply to copies, which are not classified
    assert listed("copies=show&topic=macro") == listed("topic=macro")
    assert len(listed("copies=show&q=statement+0")) == 4
    bad = client.get("/finance-monitor/documents/?copies=all")
    assert bad.status_code == 400 and set(bad.context["form"].errors) == {"copies"}
    exported = client.get("/finance-monitor/documents.csv?copies=show&q=statement+0")
    rows = list(csv.DictReader(io.StringIO(b"".join(exported.streaming_content).decode())))
    assert (
        sorted((r["duplicate_of"], r["copies"]) for r in rows) == [("", "3")] + [(str(original.pk), "0")] * 3
    )
    # another organisation cannot list these copies
    _, other_owner = make_org()
    assert login(other_owner).get(f"/finance-monitor/documents/?copy_of={original.pk}").status_code == 404


def test_csv_export_is_streamed_formula_safe_and_tenant_scoped(monitor, make_org):
    organisation, owner, _ = monitor
    other, other_owner = make_org()
    put(other, ["Their own document about oil"], "energy", NEG)
    answer = login(owner).get("/finance-monitor/documents.csv?topic=stocks")
    assert answer.status_code == 200 and answer.streaming
    assert answer["Content-Type"].startswith("text/csv")
    assert answer["Content-Disposition"].startswith('attachment; filename="documents-')
    rows = list(csv.DictReader(io.StringIO(b"".join(answer.streaming_content).decode())))
    assert len(rows) == 6 and {r["topic"] for r in rows} == {"stocks"}
    texts = {r["text"] for r in rows}
    assert '\'=HYPERLINK("http://evil","x")' in texts and "'-5% drop in futures" in texts
    assert "'@SUM(A1:A9) guidance" in texts and "$AAPL slides on weak demand, note 0" in texts
    negative = next(r for r in rows if r["sentiment"] == "negative")
    assert float(negative["score"]) == pytest.approx(-0.75)  # numbers stay numbers
    assert {r["source"] for r in rows} == {"API", "Wire"}
    theirs = login(other_owner).get("/finance-monitor/documents.csv")
    their_rows = list(csv.DictReader(io.StringIO(b"".join(theirs.streaming_content).decode())))
    assert [r["text"] for r in their_rows] == ["Their own document about oil"]
    bad = login(owner).get("/finance-monitor/documents.csv?sentiment=angry")
    assert bad.status_code == 400 and "sentiment" in bad.json()["error"]["details"]
    assert dashboard.csv_safe("+1 555") == "'+1 555" and dashboard.csv_safe("Apple") == "Apple"


def test_analysts_correct_from_the_drill_down_with_roles_and_tenants(monitor, make_org, make_member):
    organisation, owner, _ = monitor
    document = Document.objects.for_org(organisation).filter(topic="macro").first()
    page = "/finance-monitor/documents/?topic=macro"
    url = f"/finance-monitor/documents/{document.pk}/correct"
    viewer = login(make_member(organisation, Role.VIEWER))
    listing = viewer.get(page)
    assert listing.status_code == 200 and b'class="correct"' not in listing.content
    assert viewer.post(url, {"sentiment": "negative"}).status_code == 403
    operator = login(make_member(organisation, Role.OPERATOR))
    assert b'class="correct"' in operator.get(page).content
    answer = operator.post(url, {"sentiment": "negative", "topic": "stocks", "next": page})
    assert answer.status_code == 302 and answer["Location"] == page
    document.refresh_from_db()
    assert (document.topic, document.sentiment, document.corrected_sentiment) == (
        "stocks",
        "negative",
        "negative",
    )
    assert document.model_answer["topic"] == "macro"
    hour = TrendBucket.objects.for_org(organisation).get(dimension="topic", key="macro", granularity="hour")
    assert hour.volume == 3  # the trend counts moved with the correction
    # nothing chosen, or an unsafe next: a message, and back to the drill-down; nothing changes
    answer = operator.post(url, {"next": "https://evil.example/"}, follow=True)
    assert b"Choose a topic, a sentiment or both." in answer.content
    assert answer.redirect_chain[-1][0] == "/finance-monitor/documents/"
    # another organisation's analyst: 404
    other, other_owner = make_org()
    assert login(other_owner).post(url, {"sentiment": "positive"}).status_code == 404
    document.refresh_from_db()
    assert document.sentiment == "negative"
