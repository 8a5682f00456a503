"""A new customer's way in from the recommender's page: the checklist (and the dashboard's next step), the
sample shop (the demo's Online Retail loader, metered), catalogue and events uploads (counts and row errors),
and the Train button (the API's job, its page linked). CSRF-protected POSTs for members with the API's
permissions; viewers see the page without the forms; bad input is a form error."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from core.billing.services import meter_used
from core.jobs.models import TrainingJob
from core.tenancy.models import Role
from recommender.models import Event, Item
from recommender.services.catalogue import CATALOGUE_METER
from tests.conftest import PASSWORD, flash_text, logged_in_client

pytestmark = pytest.mark.django_db

PAGE = "/recommender/"
ITEMS_CSV = b"id,title,categories,price\nA,Red mug,mugs,5\nB,Blue mug,mugs|blue,6\n,No id,,1\nC,Teapot,,abc\n"
EVENTS_CSV = (
    b"id,user,item,type,occurred_at\n"
    b"e1,u1,A,purchase,2026-01-02T09:00:00Z\n"
    b"e2,u1,B,view,2026-01-02T09:05:00Z\n"
    b"e3,u2,Z,purchase,2026-01-02T09:00:00Z\n"
    b"e4,u2,A,wink,2026-01-02T09:00:00Z\n"
)


def test_the_sample_shop_loads_once_metered_and_recommends_at_once(make_org):
    organisation, owner = make_org()
    client = logged_in_client(owner)
    page = client.get(PAGE).content.decode()
    assert "Get started: 0 of 3 done" in page and "Load the sample shop</button>" in page
    dashboard = client.get("/dashboard/").content.decode()
    assert 'data-next-step="Recommender"' in dashboard and "Load the sample shop" in dashboard
    answer = client.post("/recommender/sample/", follow=True)
    assert answer.redirect_chain == [(PAGE, 302)]
    assert "Sample shop loaded: 1505 items and 5000 purchases" in flash_text(answer)
    assert Item.objects.for_org(organisation).count() == 1505
    assert Event.objects.for_org(organisation).count() == 5000
    assert meter_used(organisation=organisation, meter=CATALOGUE_METER) == 1505
    html = answer.content.decode()
    assert "Get started: 2 of 3 done" in html and "1505 items" in html
    explored = client.get(PAGE, {"user": "16187"}).content.decode()
    listed = explored[explored.index('id="explorer-list"') :]
    # no model yet: the popular items of the last 30 days, said in words (not the method's name)
    assert "<h3>Recommended: popular items (no model trained yet)</h3>" in listed
    assert "live_popularity" not in explored
    assert listed[: listed.index("</ol>")].count("<li>") == 10
    again = client.post("/recommender/sample/", follow=True)
    assert "has items already" in flash_text(again) and Event.objects.for_org(organisation).count() == 5000


def test_uploads_say_what_was_stored_and_which_lines_were_not(make_org):
    organisation, owner = make_org()
    client = logged_in_client(owner)
    items = client.post(
        "/recommender/catalogue/", {"catalogue-file": SimpleUploadedFile("items.csv", ITEMS_CSV)}
    )
    assert items.status_code == 302 and items["Location"] == f"{PAGE}#catalogue"
    flash = flash_text(client.get(PAGE))
    assert "items.csv: 2 items created, 0 updated, 0 already there, 2 rejected." in flash
    assert "line 4: id is missing" in flash and "line 5:" in flash
    assert sorted(Item.objects.for_org(organisation).values_list("external_id", flat=True)) == ["A", "B"]
    answer = client.post(
        "/recommender/events/", {"events-file": SimpleUploadedFile("events.csv", EVENTS_CSV)}, follow=True
    )
    assert answer.redirect_chain == [(f"{PAGE}#events", 302)]
    flash = flash_text(answer)
    assert "events.csv: 2 events created" in flash and "2 rejected" in flash
    assert "line 4:" in flash and "line 5:" in flash
    assert Event.objects.for_org(organisation).count() == 2
    assert 'data-step="events" data-done="1"' in answer.content.decode()


@pytest.mark.parametrize(
    ("url", "field", "name", "body", "error"),
    [
        (
            "/recommender/catalogue/",
            "catalogue-file",
            "items.txt",
            b"id,title\nA,B\n",
            "Upload a .csv or .jsonl",
        ),
        ("/recommender/catalogue/", "catalogue-file", "items.csv", b"", "The submitted file is empty."),
        ("/recommender/events/", "events-file", "events.csv", b"id,user\n\xff\xfe,1\n", "UTF-8"),
    ],
)
def test_a_bad_file_is_a_form_error_and_stores_nothing(make_org, url, field, name, body, error):
    organisation, owner = make_org()
    answer = logged_in_client(owner).post(url, {field: SimpleUploadedFile(name, body)})
    assert answer.status_code == 400 and error in answer.content.decode()
    assert (
        not Item.objects.for_org(organisation).exists() and not Event.objects.for_org(organisation).exists()
    )


def test_the_train_button_starts_the_apis_job_and_links_it(shop):
    organisation, owner = shop
    client = logged_in_client(owner)
    answer = client.post("/recommender/train/", {"method": "popularity"})
    job = TrainingJob.objects.for_org(organisation).get()
    assert answer.status_code == 302 and answer["Location"] == f"/jobs/{job.pk}/"
    assert job.kind == "recommender.train" and job.params["config"]["method"] == "popularity"
    html = client.get(PAGE).content.decode()
    assert f'href="/jobs/{job.pk}/">Follow job #{job.pk}</a>' in html
    bad = client.post("/recommender/train/", {"method": "magic"})
    assert bad.status_code == 400 and "Select a valid choice" in bad.content.decode()
    assert TrainingJob.objects.for_org(organisation).count() == 1


def test_viewers_and_operators_get_what_their_role_allows(make_org, make_member):
    organisation, _ = make_org()
    viewer = logged_in_client(make_member(organisation, Role.VIEWER))
    html = viewer.get(PAGE).content.decode()
    assert 'id="checklist"' in html
    for form in (
        'id="catalogue-form"',
        'id="events-form"',
        'id="train-form"',
        "Load the sample shop</button>",
    ):
        assert form not in html
    assert viewer.post("/recommender/sample/").status_code == 403
    upload = {"catalogue-file": SimpleUploadedFile("items.csv", ITEMS_CSV)}
    assert viewer.post("/recommender/catalogue/", upload).status_code == 403
    assert viewer.post("/recommender/train/", {"method": "ease"}).status_code == 403
    operator = logged_in_client(make_member(organisation, Role.OPERATOR))  # ingests, does not train
    html = operator.get(PAGE).content.decode()
    assert 'id="catalogue-form"' in html and 'id="train-form"' not in html
    assert operator.post("/recommender/train/", {"method": "ease"}).status_code == 403
    assert not Item.objects.for_org(organisation).exists() and not TrainingJob.objects.for_org(organisation)
    strict = Client(enforce_csrf_checks=True)  # an owner without the form's CSRF token
    assert strict.login(username=make_member(organisation, Role.OWNER).username, password=PASSWORD)
    assert strict.post("/recommender/sample/").status_code == 403
    assert not Item.objects.for_org(organisation).exists()
