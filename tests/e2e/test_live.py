"""The live-page script (static/js/live.js) in a real browser: frames from the socket update the page at once,
a dropped socket reconnects, and with no socket at all the page still follows the database by polling."""

import re

import pytest
from playwright.sync_api import expect

from core.jobs.models import TrainingJob
from core.tenancy import services as tenancy
from tests.e2e.accounts import PASSWORD, log_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


# A stand-in for the browser's WebSocket that the test drives: live_server has no websocket endpoint.
FAKE_SOCKET = """
window.__sockets = [];
window.WebSocket = class {
  constructor(url) {
    this.url = url;
    window.__sockets.push(this);
    setTimeout(() => this.onopen && this.onopen(), 0);
  }
  close() { this.onclose && this.onclose(); }
};
"""


def test_socket_frames_update_at_once_and_a_dropped_socket_reconnects(live_server, page):
    org, owner = tenancy.organisation_sign_up(
        organisation_name="Live Org", email="live.owner@example.com", password=PASSWORD
    )
    job = TrainingJob.all_tenants.create(
        organisation=org, kind="usage.export", status="running", progress=0.1, queue="default"
    )
    page.add_init_script(FAKE_SOCKET)
    log_in(page, live_server.url, owner.email)
    page.goto(f"{live_server.url}/jobs/")
    row = page.locator(f'tr[data-job="{job.pk}"]')
    expect(row.locator(".bar > span")).to_have_attribute("style", re.compile(r"width:\s*10%"))
    assert page.evaluate("window.__sockets.map((s) => new URL(s.url).pathname)") == ["/ws/jobs/"]
    frame = {
        "type": "job.progress",
        "data": {
            "id": job.pk,
            "status": "running",
            "progress": 0.55,
            "message": "from the socket",
            "error": "",
            "device": "cpu",
        },
    }
    shown = page.evaluate(  # read in the same task: the next poll puts the database's state back
        """([f, id]) => {
            window.__sockets[0].onmessage({ data: JSON.stringify(f) });
            const row = document.querySelector(`tr[data-job="${id}"]`);
            return [row.querySelector(".message").textContent, row.querySelector(".bar > span").style.width];
        }""",
        [frame, job.pk],
    )
    assert shown == ["from the socket", "55%"]
    page.evaluate("window.__sockets[0].close()")
    page.wait_for_function("window.__sockets.length === 2", timeout=5_000)  # reconnected after ~1 s


def test_without_a_socket_the_inbox_and_jobs_follow_by_polling(live_server, page):
    org, owner = tenancy.organisation_sign_up(
        organisation_name="Poll Org", email="poll.owner@example.com", password=PASSWORD
    )
    job = TrainingJob.all_tenants.create(
        organisation=org, kind="usage.export", status="running", progress=0.2, queue="default"
    )
    page.add_init_script("window.WebSocket = undefined;")
    log_in(page, live_server.url, owner.email)
    page.goto(f"{live_server.url}/jobs/")
    row = page.locator(f'tr[data-job="{job.pk}"]')
    TrainingJob.all_tenants.filter(pk=job.pk).update(progress=0.9, message="polled")
    expect(row.locator(".message")).to_have_text("Running: polled.", timeout=10_000)
    expect(row.locator(".bar > span")).to_have_attribute("style", re.compile(r"width:\s*90%"))
