"""End to end in a real browser: sign up, make an API key, call the API, see the call metered;
and the jobs page following a job's progress without a reload."""

import json
import re
import urllib.request

import pytest
from playwright.sync_api import expect

from core.billing.models import UsageEvent
from core.jobs.models import TrainingJob
from core.tenancy import services as tenancy
from core.tenancy.models import ApiKey, Organisation
from tests.e2e.accounts import PASSWORD, log_in
from tests.worker import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCREENSHOT = "/tmp/e2e_usage.png"


def _api_get(url: str, secret: str) -> tuple[int, dict]:
    """A machine's call: no browser cookies, only the key."""
    assert url.startswith("http://localhost:") or url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {secret}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the live server, http only
        return response.status, json.loads(response.read())


def test_sign_up_create_key_call_api_and_see_usage(live_server, page):
    base = live_server.url
    page.goto(f"{base}/signup/")
    page.fill("#id_organisation_name", "Browser Test Org")
    page.fill("#id_email", "E2E.Owner@example.com")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Create organisation").click()

    page.wait_for_url(f"{base}/dashboard/")
    expect(page.locator("main h1")).to_have_text("Browser Test Org")
    expect(page.locator(".flash.success")).to_contain_text("14-day free trial")
    expect(page.locator(".who")).to_contain_text("e2e.owner@example.com")

    page.goto(f"{base}/keys/")
    expect(page.locator("main")).to_contain_text("No keys yet.")
    page.fill("#id_name", "browser key")
    for scope in ("read", "predict", "train", "admin"):
        page.locator(f"input[name=scopes][value={scope}]").set_checked(scope == "read")
    page.click("#create-key")
    secret = page.locator("#new-secret").inner_text().strip()

    org = Organisation.objects.get(name="Browser Test Org")
    key = ApiKey.objects.for_org(org).get()
    assert (key.name, key.scopes) == ("browser key", ["read"])
    assert re.fullmatch(r"trl_[0-9a-f]{8}_[\w-]{40,}", secret), secret
    assert secret.startswith(key.prefix + "_")

    status, body = _api_get(f"{base}/api/organisation/", secret)
    assert status == 200 and body["name"] == "Browser Test Org" and body["id"] == org.pk

    # with Redis the call's line reaches the ledger through the stream, within the flusher's interval
    wait_for(lambda: UsageEvent.objects.for_org(org).filter(meter="api_calls").exists(), timeout=10)
    page.goto(f"{base}/usage/")
    events = page.locator("#usage-events")
    row = events.locator("tr", has_text="/api/organisation/")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("API calls")
    expect(row).to_contain_text(key.prefix)
    expect(row).to_contain_text("GET /api/organisation/ → 200")
    page.screenshot(path=SCREENSHOT, full_page=True)

    # Shown once: a fresh visit lists the prefix and never the secret.
    page.goto(f"{base}/keys/")
    expect(page.locator("#new-secret")).to_have_count(0)
    keys_row = page.locator("tr", has_text="browser key")
    expect(keys_row).to_contain_text(key.prefix)
    expect(keys_row).to_contain_text("active")
    assert secret not in page.content()
    assert secret.split("_", 2)[2] not in page.content()


def test_jobs_page_follows_progress_without_reload(live_server, page):
    base = live_server.url
    org, owner = tenancy.organisation_sign_up(
        organisation_name="Jobs Org", email="jobs.owner@example.com", password=PASSWORD
    )
    job = TrainingJob.all_tenants.create(
        organisation=org, kind="usage.export", status="running", progress=0.1, queue="default"
    )

    log_in(page, base, owner.email)

    page.goto(f"{base}/jobs/")
    row = page.locator(f'tr[data-job="{job.pk}"]')
    bar = row.locator(".bar > span")
    expect(bar).to_have_attribute("style", re.compile(r"width:\s*10%"))
    expect(row.locator(".status")).to_have_text("running")
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    page.evaluate("window.__sameDocument = true")

    TrainingJob.all_tenants.filter(pk=job.pk).update(progress=0.8, status="succeeded", message="Done")

    page.wait_for_function(
        """(id) => {
            const row = document.querySelector(`tr[data-job="${id}"]`);
            return row && row.querySelector(".bar > span").style.width === "80%"
                && row.querySelector(".status").textContent.trim() === "succeeded";
        }""",
        arg=job.pk,
        timeout=15_000,
    )
    expect(row.locator(".message")).to_have_text("Finished: Done.")  # in a sentence, as on the job's page
    expect(row).to_have_attribute("data-active", "0")
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    assert navigations == [], navigations


def test_job_page_shows_step_loss_and_eta_live(live_server, page):
    base = live_server.url
    org, owner = tenancy.organisation_sign_up(
        organisation_name="Train Org", email="train.owner@example.com", password=PASSWORD
    )
    metrics = {"step": 10, "total_steps": 120, "loss": 1.5, "val_metric": None, "eta_s": 300.0}
    job = TrainingJob.all_tenants.create(
        organisation=org, kind="ml.train", status="running", progress=0.08, queue="train", metrics=metrics
    )
    log_in(page, base, owner.email)
    page.goto(f"{base}/jobs/{job.pk}/")
    cell = page.locator(f'[data-metrics-for="{job.pk}"]')
    expect(cell).to_have_text("step 10/120 · loss 1.5000 · ETA 300 s")
    later = {"step": 30, "total_steps": 120, "loss": 0.41, "val_metric": 0.9, "eta_s": 42.4}
    TrainingJob.all_tenants.filter(pk=job.pk).update(progress=0.25, metrics=later)
    expect(cell).to_have_text("step 30/120 · loss 0.4100 · validation 0.9000 · ETA 42 s", timeout=15_000)
