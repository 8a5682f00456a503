"""Trend buckets: correct counts, incremental and idempotent (a retry counts once), per entry, per tenant."""

from datetime import UTC, datetime, timedelta

import pytest

from finance_monitor.models import Document, TrendBucket
from finance_monitor.services import documents as docs
from finance_monitor.services import entities
from finance_monitor.services.trends import (
    Classified,
    document_classified,
    documents_classified,
    trend_series,
)

BASE = "/api/finance-monitor"
NEG = {"positive": 0.1, "neutral": 0.2, "negative": 0.7}
POS = {"positive": 0.8, "neutral": 0.1, "negative": 0.1}
T0 = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


def push(organisation, texts_times):
    items = [docs.DocumentIn(text=t, published_at=at) for t, at in texts_times]
    return docs.documents_ingest(organisation=organisation, items=items).created


@pytest.mark.django_db
def test_buckets_match_a_recount_and_retries_count_once(make_org):
    organisation, _ = make_org()
    ids = push(organisation, [(f"story {i} about rates", T0 + timedelta(minutes=20 * i)) for i in range(6)])
    # one batch: six documents in three hours, one upsert; the same batch again (a retry) changes nothing
    batch = [Classified(d, "macro", NEG if i % 3 else POS) for i, d in enumerate(ids)]
    assert documents_classified(organisation=organisation, items=batch) == ids
    assert documents_classified(organisation=organisation, items=batch) == []
    # a retried document (same result) changes nothing; a correction moves it
    assert not document_classified(
        organisation=organisation, document_id=ids[1], topic="macro", probabilities=NEG
    )
    assert document_classified(
        organisation=organisation, document_id=ids[2], topic="macro", probabilities=POS
    )
    hours = trend_series(
        organisation=organisation,
        dimension="topic",
        key="macro",
        granularity="hour",
        since=T0 - timedelta(hours=1),
        until=T0 + timedelta(hours=3),
    )
    # recount from the documents themselves
    expected = {}
    for d in Document.objects.for_org(organisation):
        start = d.occurred_at.replace(minute=0, second=0, microsecond=0)
        v, n, s = expected.get(start, (0, 0, 0.0))
        expected[start] = (v + 1, n + (d.sentiment == "negative"), s + d.score)
    assert [(p["bucket_start"], p["volume"], p["negative"]) for p in hours] == [
        (k, v[0], v[1]) for k, v in sorted(expected.items())
    ]
    assert all(abs(p["mean_score"] - expected[p["bucket_start"]][2] / p["volume"]) < 1e-9 for p in hours)
    day = trend_series(
        organisation=organisation,
        dimension="all",
        key="",
        granularity="day",
        since=T0 - timedelta(days=1),
        until=T0 + timedelta(days=1),
    )
    assert day[0]["volume"] == 6 and day[0]["negative"] == 3 and day[0]["negative_share"] == 0.5
    # moving a document to another topic takes it out of the first
    document_classified(organisation=organisation, document_id=ids[0], topic="earnings", probabilities=POS)
    total = sum(
        p["volume"]
        for p in trend_series(
            organisation=organisation,
            dimension="topic",
            key="macro",
            granularity="day",
            since=T0 - timedelta(days=1),
            until=T0 + timedelta(days=1),
        )
    )
    assert total == 5


@pytest.mark.django_db
def test_trend_api_per_entry_and_tenant_isolation(make_org, user_client):
    organisation, owner = make_org()
    entry = entities.entity_save(organisation=organisation, kind="company", name="Allstate", ticker="ALL")
    ids = push(organisation, [("Allstate warns on storms", T0), ("ALL eyes on the Fed", T0)])
    for document_id in ids:
        document_classified(
            organisation=organisation, document_id=document_id, topic="macro", probabilities=NEG
        )
    client = user_client(owner)
    since, until = "2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"
    series = client.get(
        f"{BASE}/trends/?dimension=entity&key={entry.pk}&granularity=hour&since={since}&until={until}"
    )
    assert series.status_code == 200 and [p["volume"] for p in series.json()] == [1]
    bad = client.get(f"{BASE}/trends/?granularity=week")
    assert bad.status_code == 400
    org_b, owner_b = make_org()
    other = user_client(owner_b)
    assert other.get(f"{BASE}/trends/?dimension=entity&key={entry.pk}").status_code == 404
    assert other.get(f"{BASE}/trends/?dimension=all&since={since}&until={until}").json() == []
    assert TrendBucket.objects.for_org(org_b).count() == 0


@pytest.mark.django_db
def test_time_filters_outside_the_ingest_range_are_refused_naming_the_field(make_org, user_client):
    """since/until of the trend, document and alert lists: only times the ingest could have stored
    (1900 to 9998 UTC); year 1 with a positive offset is a BC time PostgreSQL cannot read back, and
    until=year 1 made the trend's default since (a week earlier) overflow."""
    from urllib.parse import quote

    organisation, owner = make_org()
    push(organisation, [("Rates rise again", T0)])
    client = user_client(owner)
    absurd = {
        "0001-01-01T00:00:00+14:00": "out of range",
        "1850-06-01T00:00:00Z": "out of range",
        "9999-12-31T00:00:00Z": "out of range",
        "9999-01-01T00:00:00-05:00": "out of range",
        "2026-13-01T00:00:00Z": "ISO 8601",
    }
    for path in ("trends/", "documents/", "alerts/"):
        for field in ("since", "until"):
            for value, says in absurd.items():
                answer = client.get(f"{BASE}/{path}?{field}={quote(value)}")
                assert answer.status_code == 400, (path, field, value, answer.content[:200])
                error = answer.json()["error"]
                assert error["details"] == {"field": field} and error["message"].startswith(field), error
                assert says in error["message"]
    edge = f"since={quote('1900-01-01T00:00:00Z')}&until={quote('9998-12-31T00:00:00Z')}"
    assert client.get(f"{BASE}/documents/?{edge}").json()["count"] == 1
    assert client.get(f"{BASE}/trends/?{edge}&granularity=day").status_code == 200
