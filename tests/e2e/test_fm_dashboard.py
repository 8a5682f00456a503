"""The finance monitor's dashboard in a real browser under uvicorn with the Redis channel layer: the charts
are drawn from the trends, a document pushed through the API appears in the live feed without a reload (its
classification's fm.documents frame crosses processes through Redis), the drill-down's filters narrow the
list, and the CSV export downloads the filtered documents."""

import csv
import io
import json
import threading
import urllib.request
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from playwright.sync_api import expect

from core.tenancy import services as tenancy
from finance_monitor.services import dashboard
from finance_monitor.services.trends import document_classified
from tests.e2e.accounts import PASSWORD, log_in
from tests.finance_monitor.planting import NEG, NEU
from tests.finance_monitor.test_dashboard import put
from tests.worker import asgi_server

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

POS = {"positive": 0.8, "neutral": 0.15, "negative": 0.05}


def classify_in_a_thread(organisation, document_id: int) -> None:
    """What a classification batch records and broadcasts (``services.classification``), here for one
    document with a given answer; in a thread of its own, since Playwright's loop runs in the test's."""

    def work() -> None:
        try:
            with transaction.atomic():
                document_classified(
                    organisation=organisation, document_id=document_id, topic="stocks", probabilities=POS
                )
                dashboard.documents_classified_broadcast(
                    organisation=organisation, document_ids=[document_id]
                )
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)


def test_dashboard_charts_live_feed_drill_down_and_export(page, tmp_path):
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (REDIS_URL): the embedded default's channel layer is in memory")
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "core.channel_layer.RedisChannelLayer"
    organisation, owner = tenancy.organisation_sign_up(
        organisation_name="Monitor Org", email="monitor.owner@example.com", password=PASSWORD
    )
    _key, secret = tenancy.api_key_create(
        organisation=organisation, created_by=None, name="pusher", scopes=["train"]
    )
    now = timezone.now()
    put(organisation, [f"Chip maker $NVDA slides, note {i}" for i in range(4)], "stocks", NEG, now)
    put(organisation, [f"Central bank minutes, item {i}" for i in range(6)], "macro", NEU, now)
    put(organisation, [f"Quiet session, item {i}" for i in range(3)], "macro", NEU, now - timedelta(hours=5))

    with asgi_server() as base:
        log_in(page, base, owner.email)
        page.goto(f"{base}/finance-monitor/")
        # the charts: Chart.js instances holding the buckets' points
        points = page.evaluate(
            """() => ["chart-volume", "chart-sentiment", "chart-topics"].map((id) => {
                const chart = Chart.getChart(document.getElementById(id));
                return chart.data.datasets.map((d) => d.data.filter((v) => v !== null && v !== 0));
            })"""
        )
        volume, sentiment, topics = points
        assert sum(volume[0]) == 13 and len(volume[0]) == 2  # two non-empty hours
        assert sentiment[0][-1] == pytest.approx(4 / 10, abs=1e-3)  # negative share of this hour
        assert sorted(sum(d) for d in topics) == [4, 9]
        # the live feed: a document pushed through the API arrives once classified, without a reload
        feed = page.locator("#live-feed")
        expect(feed).to_have_attribute("data-socket", "open")
        request = urllib.request.Request(  # noqa: S310 - the local test server
            f"{base}/api/finance-monitor/documents/",
            data=json.dumps({"text": "Breaking: ACME wins record defence contract"}).encode(),
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            pushed = json.load(answer)
        classify_in_a_thread(organisation, pushed["id"])
        item = feed.locator(f'li[data-document="{pushed["id"]}"]')
        expect(item).to_have_attribute("data-live", "socket", timeout=10_000)
        expect(item).to_contain_text("ACME wins record defence contract")
        expect(item).to_contain_text("positive")
        # drill-down: the topic and sentiment filters narrow the list
        page.goto(f"{base}/finance-monitor/documents/")
        expect(page.locator("#result-count")).to_contain_text("14 documents")
        page.select_option("select[name=topic]", "stocks")
        page.select_option("select[name=sentiment]", "negative")
        page.get_by_role("button", name="Filter").click()
        expect(page.locator("#result-count")).to_contain_text("4 documents")
        expect(page.locator("#documents tbody tr")).to_have_count(4)
        # the CSV export of what is shown
        with page.expect_download() as download:
            page.locator("#export-csv").click()
        path = tmp_path / "export.csv"
        download.value.save_as(path)
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
        assert len(rows) == 4 and {(r["topic"], r["sentiment"]) for r in rows} == {("stocks", "negative")}
