"""A new customer's way in from the monitor's page: the checklist (and the dashboard's next step), the sample
data (a modest replay of the shipped texts, metered), a file upload (counts and row errors), watch-list and
feed forms, and the default models' training said in words with its jobs linked. Forms are CSRF-protected
POSTs for members with the API's permissions; viewers see the page without them; bad input is a form error."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from core.billing.models import UsageEvent
from core.tenancy.models import Role
from finance_monitor.models import AlertRule, Document, Entity, Replay, Source
from finance_monitor.services import defaults
from finance_monitor.services.sample import SOURCE as SAMPLE_SOURCE
from tests.conftest import PASSWORD, flash_text, logged_in_client

pytestmark = pytest.mark.django_db

PAGE = "/finance-monitor/"


def _ingested(organisation) -> float:
    lines = UsageEvent.objects.for_org(organisation).filter(meter="documents_ingested")
    return float(sum(e.quantity for e in lines))


def test_the_sample_data_replays_a_modest_metered_set_once(make_org, settings):
    settings.FM_DEFAULT_MODELS_ON_FIRST_USE = False
    organisation, owner = make_org()
    client = logged_in_client(owner)
    page = client.get(PAGE).content.decode()
    assert "Get started: 0 of 4 done" in page and "Try it with sample data" in page
    answer = client.post("/finance-monitor/sample/", follow=True)
    assert answer.redirect_chain == [(PAGE, 302)]
    assert "Sample data loaded: 120 documents of the past day" in flash_text(answer)
    # the surge it plants is watched for: the demo's rule, added where the organisation had none
    assert "The alert rule 'Negative surge (all documents)' watches for it" in flash_text(answer)
    assert list(AlertRule.objects.for_org(organisation).values_list("name", "target")) == [
        ("Negative surge (all documents)", "all")
    ]
    documents = Document.objects.for_org(organisation)
    assert documents.count() == 120 and set(documents.values_list("source__name", flat=True)) == {
        SAMPLE_SOURCE
    }
    assert _ingested(organisation) == 120  # metered as any other ingestion
    run = Replay.objects.for_org(organisation).get()
    assert run.started_at is not None and run.backfilled_at is not None and run.finished_at is None
    assert 'data-step="data" data-done="1"' in answer.content.decode()
    again = client.post("/finance-monitor/sample/", follow=True)
    assert "already" in flash_text(again)
    assert documents.count() == 120 and Replay.objects.for_org(organisation).count() == 1
    # an organisation with rules of its own gets none added
    other, other_owner = make_org()
    from finance_monitor.services import alerts

    alerts.alert_rule_save(organisation=other, name="mine", granularity="hour")
    loaded = logged_in_client(other_owner).post("/finance-monitor/sample/", follow=True)
    assert "watches for it" not in flash_text(loaded)
    assert list(AlertRule.objects.for_org(other).values_list("name", flat=True)) == ["mine"]


def test_viewers_see_the_page_without_the_forms_and_cannot_post(make_org, make_member):
    organisation, _ = make_org()
    viewer = logged_in_client(make_member(organisation, Role.VIEWER))
    page = viewer.get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="checklist"' in html
    for form in (
        'id="upload-form"',
        'id="entity-form"',
        'id="feed-form"',
        "Try it with sample data</button>",
    ):
        assert form not in html
    assert viewer.post("/finance-monitor/sample/").status_code == 403
    upload = SimpleUploadedFile("docs.csv", b"text\nRates rise\n")
    assert viewer.post("/finance-monitor/upload/", {"file": upload}).status_code == 403
    assert viewer.post("/finance-monitor/watch-list/", {"kind": "company", "name": "Acme"}).status_code == 403
    assert Document.objects.for_org(organisation).count() == 0 and not Entity.objects.for_org(organisation)
    # an operator ingests (monitor.ingest) but does not manage the watch-list or feeds (monitor.manage)
    operator = logged_in_client(make_member(organisation, Role.OPERATOR))
    html = operator.get(PAGE).content.decode()
    assert 'id="upload-form"' in html and 'id="entity-form"' not in html and 'id="feed-form"' not in html
    feed = {"name": "Wire", "feed_url": "http://127.0.0.1:9/feed", "poll_interval_s": 900}
    assert operator.post("/finance-monitor/feeds/", feed).status_code == 403
    assert not Source.objects.for_org(organisation).exists()


def test_the_forms_are_csrf_protected(make_org):
    _, owner = make_org()
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=owner.username, password=PASSWORD)
    assert client.post("/finance-monitor/sample/").status_code == 403


def test_an_upload_says_what_was_stored_and_which_rows_were_not(make_org, settings):
    settings.FM_DEFAULT_MODELS_ON_FIRST_USE = False
    organisation, owner = make_org()
    client = logged_in_client(owner)
    csv = b"text,published_at\nRates rise,2026-01-02T09:00:00Z\n,\nOil falls,yesterday\nCopper slides,\n"
    answer = client.post(
        "/finance-monitor/upload/",
        {"file": SimpleUploadedFile("news.csv", csv), "source": "My wire"},
        follow=True,
    )
    assert answer.redirect_chain == [(PAGE, 302)]
    flash = flash_text(answer)
    assert "news.csv: 4 rows read, 2 stored" in flash and "2 rejected" in flash
    assert "line 3:" in flash and "line 4: published_at 'yesterday' is not an ISO 8601" in flash
    stored = Document.objects.for_org(organisation)
    assert sorted(stored.values_list("text", flat=True)) == ["Copper slides", "Rates rise"]
    assert set(stored.values_list("source__name", flat=True)) == {"My wire"}


@pytest.mark.parametrize(
    ("name", "body", "error"),
    [
        ("notes.txt", b"text\nRates rise\n", "Upload a .csv or .jsonl file."),
        ("news.csv", b"headline\nRates rise\n", "The CSV needs a &#x27;text&#x27; column."),
        ("news.csv", b"text\nRates\xff rise\n", "The file is not UTF-8"),
    ],
)
def test_a_bad_file_is_a_form_error_and_stores_nothing(make_org, name, body, error):
    organisation, owner = make_org()
    answer = logged_in_client(owner).post(
        "/finance-monitor/upload/", {"file": SimpleUploadedFile(name, body)}
    )
    assert answer.status_code == 400
    assert error in answer.content.decode()
    assert 'id="upload-form"' in answer.content.decode()
    assert not Document.objects.for_org(organisation).exists()


def test_watch_list_and_feed_forms(make_org):
    organisation, owner = make_org()
    client = logged_in_client(owner)
    entry = {"kind": "company", "name": "Acme Corp", "ticker": "acme", "aliases": "Acme, ACME Inc"}
    answer = client.post("/finance-monitor/watch-list/", entry, follow=True)
    assert answer.redirect_chain == [(f"{PAGE}#watch-list", 302)]
    assert "'Acme Corp' is on the watch-list" in flash_text(answer)
    saved = Entity.objects.for_org(organisation).get()
    assert (saved.ticker, saved.aliases) == ("ACME", ["Acme", "ACME Inc"])
    assert 'data-step="watch-list" data-done="1"' in answer.content.decode()
    twice = client.post("/finance-monitor/watch-list/", entry)
    assert (
        twice.status_code == 400
        and "The watch-list has &#x27;Acme Corp&#x27; already." in twice.content.decode()
    )
    no_ticker = client.post("/finance-monitor/watch-list/", {"kind": "ticker", "name": "Bolt"})
    assert no_ticker.status_code == 400 and "A ticker entry needs a ticker." in no_ticker.content.decode()
    nul = client.post("/finance-monitor/watch-list/", {"kind": "company", "name": "A\x00b"})
    assert nul.status_code == 400 and Entity.objects.for_org(organisation).count() == 1

    feed = {"name": "Wire", "feed_url": "http://127.0.0.1:9/feed", "poll_interval_s": 900}
    added = client.post("/finance-monitor/feeds/", feed, follow=True)
    assert added.redirect_chain == [(f"{PAGE}#sources", 302)] and "Feed 'Wire' added" in flash_text(added)
    assert Source.objects.for_org(organisation).get(name="Wire").feed_url == feed["feed_url"]
    private = client.post(
        "/finance-monitor/feeds/", {**feed, "name": "Inside", "feed_url": "http://10.0.0.1/x"}
    )
    assert private.status_code == 400 and "feed_url" in private.content.decode()
    fast = client.post("/finance-monitor/feeds/", {**feed, "name": "Fast", "poll_interval_s": 5})
    assert fast.status_code == 400 and "greater than or equal to 60" in fast.content.decode()
    assert Source.objects.for_org(organisation).filter(feed_url__gt="").count() == 1


def test_the_page_says_the_default_models_are_training_and_links_the_jobs(make_org, make_member, settings):
    settings.FM_DEFAULT_MODELS_ON_FIRST_USE = False
    settings.FM_DEFAULT_TRAIN_ROWS = 30
    organisation, owner = make_org()
    client = logged_in_client(owner)
    upload = SimpleUploadedFile("news.csv", b"text\nRates rise\nOil falls\n")
    client.post("/finance-monitor/upload/", {"file": upload})
    html = client.get(PAGE).content.decode()
    assert "2 documents waiting for classification: no topic and sentiment models yet" in html
    # a viewer is not offered the training (models.train)
    viewer = logged_in_client(make_member(organisation, Role.VIEWER))
    assert "Train the default models</button>" not in viewer.get(PAGE).content.decode()
    assert viewer.post("/finance-monitor/models/defaults/").status_code == 403
    answer = client.post("/finance-monitor/models/defaults/", follow=True)
    jobs = list(defaults._default_jobs(organisation).order_by("id"))
    assert len(jobs) == 2 and "Training the default models: topic (job #" in flash_text(answer)
    html = answer.content.decode()
    assert "The default topic and sentiment models are being trained" in html
    for job in jobs:
        assert f'href="/jobs/{job.pk}/">job #{job.pk}</a>' in html
    assert "2 documents waiting for classification." in html
    again = client.post("/finance-monitor/models/defaults/", follow=True)
    assert "under way" in flash_text(again) and defaults._default_jobs(organisation).count() == 2
    dashboard = client.get("/dashboard/").content.decode()
    assert (
        'data-next-step="Finance monitor"' in dashboard
        and "Train the topic and sentiment models" in dashboard
    )


def test_the_watch_list_and_feed_forms_say_the_caps(make_org):
    from finance_monitor.services.entities import MAX_ENTRIES
    from finance_monitor.services.feeds import MAX_FEEDS

    organisation, owner = make_org()
    Entity.all_tenants.bulk_create(
        [Entity(organisation=organisation, kind="keyword", name=f"word {n}") for n in range(MAX_ENTRIES)]
    )
    Source.all_tenants.bulk_create(
        [
            Source(organisation=organisation, name=f"feed {n}", kind="feed", feed_url=f"https://x.test/{n}")
            for n in range(MAX_FEEDS)
        ]
    )
    client = logged_in_client(owner)
    entry = client.post("/finance-monitor/watch-list/", {"kind": "company", "name": "Acme Corp"})
    assert entry.status_code == 400
    assert "at most 2,000 watch-list entries: delete one to add another." in entry.content.decode()
    feed = {"name": "Wire", "feed_url": "http://127.0.0.1:9/feed", "poll_interval_s": 900}
    answer = client.post("/finance-monitor/feeds/", feed)
    assert answer.status_code == 400
    assert "at most 100 feeds: delete one to add another." in answer.content.decode()
    assert Entity.objects.for_org(organisation).count() == MAX_ENTRIES
    assert Source.objects.for_org(organisation).count() == MAX_FEEDS


def test_a_manager_removes_a_watch_list_entry_and_a_source_from_the_page(make_org, make_member):
    """The page's Remove buttons (the API's DELETEs): an entry goes with the rules that watch it, a source's
    documents stay; another organisation's ids are 404, a viewer is refused."""
    from finance_monitor.services import alerts, entities
    from finance_monitor.services import documents as docs

    organisation, owner = make_org()
    client = logged_in_client(owner)
    typo = entities.entity_save(organisation=organisation, kind="company", name="Aple", ticker="APLE")
    alerts.alert_rule_save(organisation=organisation, name="aple", target="entity", entity_id=typo.pk)
    kept = entities.entity_save(organisation=organisation, kind="company", name="Tesla", ticker="TSLA")
    wire = docs.source_for(organisation=organisation, kind="api", name="Wire")
    docs.documents_ingest(
        organisation=organisation, items=[docs.DocumentIn(text="Tesla delivers")], source=wire
    )
    page = client.get(PAGE).content.decode()
    assert f"/finance-monitor/watch-list/{typo.pk}/delete" in page
    assert f"/finance-monitor/sources/{wire.pk}/delete" in page
    other, other_owner = make_org()
    intruder = logged_in_client(other_owner)
    assert intruder.post(f"/finance-monitor/watch-list/{typo.pk}/delete").status_code == 404
    assert intruder.post(f"/finance-monitor/sources/{wire.pk}/delete").status_code == 404
    viewer = logged_in_client(make_member(organisation, Role.VIEWER))
    assert viewer.post(f"/finance-monitor/watch-list/{typo.pk}/delete").status_code == 403
    assert f"/watch-list/{typo.pk}/delete" not in viewer.get(PAGE).content.decode()
    removed = client.post(f"/finance-monitor/watch-list/{typo.pk}/delete", follow=True)
    assert "'Aple' is off the watch-list" in flash_text(removed)
    assert list(Entity.objects.for_org(organisation).values_list("pk", flat=True)) == [kept.pk]
    assert not AlertRule.objects.for_org(organisation).exists()  # the rule that watched it went with it
    removed = client.post(f"/finance-monitor/sources/{wire.pk}/delete", follow=True)
    assert "Source 'Wire' removed" in flash_text(removed)
    assert not Source.objects.for_org(organisation).filter(name="Wire").exists()
    assert Document.objects.for_org(organisation).get().source_id is None  # the document stays
    assert client.get(f"/finance-monitor/sources/{wire.pk}/delete").status_code == 405
