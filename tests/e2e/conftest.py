"""Real-browser fixtures: Debian's headless chromium driven by Playwright's sync API.

The browser is the system one (`make browser` installs it); Playwright never downloads one here.
Each test starts and stops its own Playwright, because the sync API keeps an asyncio loop marked as
running in the test thread for as long as it lives, and Django refuses ORM calls under a running loop.
"""

import os
from importlib import import_module

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(autouse=True)
def _orm_beside_playwright(monkeypatch):
    """The test thread talks to the ORM while Playwright's loop is marked running in it; only here."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(autouse=True)
def _plans(transactional_db):
    """Browser tests are transactional: an earlier transactional test's flush may have removed the seeded
    plans (sign-up needs the trial plan), so seed them before each test; their own flush removes them again,
    and the tests after them seed what they need (``make_org``)."""
    from django.apps import apps

    import_module("core.billing.migrations.0003_seed_plans").seed(apps, None)


@pytest.fixture
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()
            # ORM calls made while Playwright's loop runs get their own connection (asgiref's Local
            # keys by context, not thread, under a running loop); close it here or it outlives the
            # test and blocks dropping the test database.
            connections.close_all()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()
