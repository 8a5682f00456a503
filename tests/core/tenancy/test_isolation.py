"""Tenant isolation: a member or key of organisation A never reaches organisation B's rows.

Two organisations with the same shape (owner, extra member, pending invitation, all-scope key,
job, usage). A's owner (session) and A's key ask for B's objects by id through every API endpoint
and page; each request must be refused (404, or 403) and leave B's rows exactly as they were.
Every refusal is paired with a positive control: the same request made by B's own owner (or B's
key) succeeds, so a typo in a URL or a broken fixture cannot make a test pass vacuously.
"""

import time
from dataclasses import dataclass
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from core.billing import services as billing
from core.billing.models import UsageEvent
from core.jobs.models import TrainingJob
from core.tenancy import services as tenancy
from core.tenancy.models import ApiKey, Invitation, Membership, Role

pytestmark = pytest.mark.django_db

ALL_SCOPES = ("read", "predict", "train", "admin")
REFUSED = (403, 404)
GHOST_ID = 2_000_000_000  # an id no tenant has


@dataclass(eq=False)
class Tenant:
    org: object
    owner: object
    member: object
    membership: Membership
    invitation: Invitation
    key: ApiKey
    secret: str
    job: TrainingJob
    usage_event: UsageEvent

    @property
    def ids(self) -> dict[str, int]:
        return {
            "member": self.membership.pk,
            "invitation": self.invitation.pk,
            "key": self.key.pk,
            "job": self.job.pk,
        }

    @property
    def emails(self) -> list[str]:
        return [self.owner.email, self.member.email, self.invitation.email]


def _build(make_org, make_member, make_key, name: str, predictions: int) -> Tenant:
    org, owner = make_org(name)
    member = make_member(org, Role.VIEWER)
    invitation, _token = tenancy.invitation_create(
        organisation=org,
        actor=owner,
        actor_role=Role.OWNER,
        email=f"invitee-{org.slug}@example.com",
        role="viewer",
    )
    key, secret = make_key(org, scopes=ALL_SCOPES)
    job = TrainingJob.all_tenants.create(organisation=org, kind="usage.export", queue="default")
    event = billing.usage_record(
        organisation=org,
        meter="predictions",
        quantity=predictions,
        api_key=key,
        metadata={"note": f"mark-{org.slug}"},
    )
    return Tenant(
        org=org,
        owner=owner,
        member=member,
        membership=Membership.objects.for_org(org).get(user=member),
        invitation=invitation,
        key=key,
        secret=secret,
        job=job,
        usage_event=event,
    )


@pytest.fixture
def world(make_org, make_member, make_key):
    """(A, B): B has more predictions than A so that a summed-over-tenants count would show."""
    return _build(make_org, make_member, make_key, "Alpha Org", 1), _build(
        make_org, make_member, make_key, "Bravo Org", 3
    )


def _snapshot(t: Tenant) -> dict:
    """Everything about B that a leaked write could change."""
    return {
        "members": sorted(Membership.objects.for_org(t.org).values_list("pk", "user_id", "role")),
        "invitations": sorted(
            Invitation.objects.for_org(t.org).values_list("pk", "revoked_at", "accepted_at")
        ),
        "keys": sorted(ApiKey.objects.for_org(t.org).values_list("pk", "revoked_at", "scopes")),
        "jobs": sorted(
            TrainingJob.objects.for_org(t.org).values_list("pk", "status", "progress", "finished_at")
        ),
        "org_name": type(t.org).objects.get(pk=t.org.pk).name,
    }


def _api(t: Tenant, actor: str) -> APIClient:
    client = APIClient()
    if actor == "session":
        client.force_login(t.owner)
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {t.secret}")
    return client


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


ACTORS = ["session", "key"]

# name, method, url template, JSON body
API_DETAIL = [
    ("get-member", "get", "/api/members/{member}/", None),
    ("patch-member", "patch", "/api/members/{member}/", {"role": "operator"}),
    ("delete-member", "delete", "/api/members/{member}/", None),
    ("delete-invitation", "delete", "/api/invitations/{invitation}/", None),
    ("get-key", "get", "/api/keys/{key}/", None),
    ("delete-key", "delete", "/api/keys/{key}/", None),
    ("get-job", "get", "/api/jobs/{job}/", None),
    ("cancel-job", "post", "/api/jobs/{job}/cancel/", None),
]


def _call(client, method: str, url: str, body):
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, format="json")


@pytest.mark.parametrize("actor", ACTORS)
@pytest.mark.parametrize(("name", "method", "template", "body"), API_DETAIL, ids=[c[0] for c in API_DETAIL])
def test_api_detail_of_other_tenant_is_refused_and_changes_nothing(
    world, actor, name, method, template, body
):
    a, b = world
    url = template.format(**b.ids)
    before = _snapshot(b)

    response = _call(_api(a, actor), method, url, body)

    assert response.status_code in REFUSED, (name, actor, response.status_code, response.content[:300])
    assert _snapshot(b) == before, f"{actor} of A changed B's rows with {method.upper()} {url}"
    # No enumeration oracle: B's id is answered exactly like an id that exists nowhere.
    ghost = _call(_api(a, actor), method, template.format(**dict.fromkeys(b.ids, GHOST_ID)), body)
    assert (response.status_code, response.json()) == (ghost.status_code, ghost.json())

    # Positive control: B itself may do exactly this, and it does change B's rows where it is a write.
    control = _call(_api(b, actor), method, url, body)
    assert 200 <= control.status_code < 300, (name, actor, control.status_code, control.content[:300])
    if method == "get":
        assert control.json()["id"] == int(url.rstrip("/").split("/")[-1])
    else:
        assert _snapshot(b) != before, f"the positive control {method.upper()} {url} changed nothing"


@pytest.mark.parametrize("actor", ACTORS)
def test_api_lists_show_only_own_rows(world, actor):
    a, b = world
    client = _api(a, actor)
    members = {t: set(Membership.objects.for_org(t.org).values_list("pk", flat=True)) for t in (a, b)}
    lists = {  # url: (A's ids, B's ids)
        "/api/members/": (members[a], members[b]),
        "/api/invitations/": ({a.invitation.pk}, {b.invitation.pk}),
        "/api/keys/": ({a.key.pk}, {b.key.pk}),
        "/api/jobs/": ({a.job.pk}, {b.job.pk}),
    }
    for url, (mine, theirs) in lists.items():
        response = client.get(url)
        assert response.status_code == 200, (url, response.content[:300])
        ids = {row["id"] for row in response.json()["results"]}
        assert not ids & theirs, f"{url} leaks B's ids {ids & theirs}"
        assert ids == mine, (url, ids, mine)
        html = response.content.decode()
        assert not [m for m in (*b.emails, b.key.prefix) if m in html], f"{url} shows B's e-mails or keys"

    events = client.get("/api/usage/events/?page_size=200")
    assert events.status_code == 200
    event_ids = {row["id"] for row in events.json()["results"]}
    assert a.usage_event.pk in event_ids and b.usage_event.pk not in event_ids
    a_event_ids = set(UsageEvent.objects.for_org(a.org).values_list("pk", flat=True))
    assert event_ids <= a_event_ids
    assert b.key.prefix not in events.content.decode() and f"mark-{b.org.slug}" not in events.content.decode()

    org = client.get("/api/organisation/").json()
    assert (org["id"], org["name"]) == (a.org.pk, "Alpha Org")

    meters = {m["meter"]: m["used"] for m in client.get("/api/usage/").json()["meters"]}
    assert meters["predictions"] == 1.0, meters  # B has 3: a cross-tenant sum would say 4

    # Positive control: B sees its own rows through the same endpoints.
    control = _api(b, actor)
    assert {r["id"] for r in control.get("/api/jobs/").json()["results"]} == {b.job.pk}
    assert {r["id"] for r in control.get("/api/keys/").json()["results"]} == {b.key.pk}
    assert b.usage_event.pk in {r["id"] for r in control.get("/api/usage/events/").json()["results"]}
    assert {m["meter"]: m["used"] for m in control.get("/api/usage/").json()["meters"]}["predictions"] == 3.0


# name, url template, POST data (None: a GET)
PAGE_DETAIL = [
    ("member-role", "/members/{member}/", {"role": "operator"}),
    ("member-remove", "/members/{member}/", {"action": "remove"}),
    ("invitation-revoke", "/members/invitations/{invitation}/revoke/", {}),
    ("key-revoke", "/keys/{key}/revoke/", {}),
    ("job-detail", "/jobs/{job}/", None),
    ("job-cancel", "/jobs/{job}/cancel/", {}),
]


@pytest.mark.parametrize(("name", "template", "data"), PAGE_DETAIL, ids=[c[0] for c in PAGE_DETAIL])
def test_page_actions_on_other_tenant_are_refused_and_change_nothing(world, name, template, data):
    a, b = world
    url = template.format(**b.ids)
    before = _snapshot(b)

    client = _browser(a.owner)
    response = client.get(url) if data is None else client.post(url, data)

    assert _snapshot(b) == before, f"A's owner changed B's rows with {url}"
    assert response.status_code in REFUSED, (url, response.status_code, response.headers.get("Location"))

    control = _browser(b.owner)
    ok = control.get(url) if data is None else control.post(url, data)
    if data is None:
        assert ok.status_code == 200 and b.job.kind in ok.content.decode()
    else:
        assert ok.status_code == 302
        assert _snapshot(b) != before, f"the positive control POST {url} changed nothing"


def test_page_actions_on_other_tenant_show_no_message_about_its_rows(world):
    """Following the refusal shows nothing of B: no success message, no e-mail, key or job."""
    a, b = world
    client = _browser(a.owner)
    for template, data in [
        ("/members/invitations/{invitation}/revoke/", {}),
        ("/jobs/{job}/cancel/", {}),
    ]:
        response = client.post(template.format(**b.ids), data, follow=True)
        html = response.content.decode()
        assert "Invitation revoked." not in html and "Job cancelled." not in html
        for secret_bit in [*b.emails, b.key.prefix, f'data-job="{b.job.pk}"', b.org.name]:
            assert secret_bit not in html


def test_jobs_status_poll_returns_only_own_jobs(world):
    a, b = world
    response = _browser(a.owner).get(f"/jobs/status/?ids={b.job.pk},{a.job.pk}")
    assert response.status_code == 200
    assert [j["id"] for j in response.json()["jobs"]] == [a.job.pk]

    control = _browser(b.owner).get(f"/jobs/status/?ids={b.job.pk},{a.job.pk}")
    assert [j["id"] for j in control.json()["jobs"]] == [b.job.pk]


LIST_PAGES = [
    "/dashboard/",
    "/members/",
    "/keys/",
    "/jobs/",
    "/usage/",
    "/billing/",
    "/customer-service/",
    "/finance-monitor/",
    "/recommender/",
]


def _markers(t: Tenant) -> list[str]:
    return [
        *t.emails,
        t.key.prefix,
        f'data-job="{t.job.pk}"',
        f"/jobs/{t.job.pk}/",
        f"/members/{t.membership.pk}/",
        f"/keys/{t.key.pk}/revoke/",
        f"/members/invitations/{t.invitation.pk}/revoke/",
        f"mark-{t.org.slug}",
        t.org.name,
    ]


@pytest.mark.parametrize("url", LIST_PAGES)
def test_pages_never_show_other_tenants_rows(world, url):
    a, b = world
    response = _browser(a.owner).get(url)
    assert response.status_code == 200, (url, response.status_code)
    html = response.content.decode()
    leaked = [m for m in _markers(b) if m in html]
    assert not leaked, f"{url} shows B's {leaked}"
    assert a.org.name in html


def test_list_pages_positive_control(world):
    """The markers checked above do appear on B's own pages, so their absence for A means something."""
    _a, b = world
    client = _browser(b.owner)
    pages = {url: client.get(url).content.decode() for url in ("/members/", "/keys/", "/jobs/", "/usage/")}
    assert all(e in pages["/members/"] for e in b.emails)
    assert f"/members/{b.membership.pk}/" in pages["/members/"]
    assert f"/members/invitations/{b.invitation.pk}/revoke/" in pages["/members/"]
    assert b.key.prefix in pages["/keys/"] and f"/keys/{b.key.pk}/revoke/" in pages["/keys/"]
    assert f'data-job="{b.job.pk}"' in pages["/jobs/"]
    assert b.key.prefix in pages["/usage/"] and f"mark-{b.org.slug}" in pages["/usage/"]
    assert f"/jobs/{b.job.pk}/" in client.get("/dashboard/").content.decode()


def test_switching_to_an_organisation_one_does_not_belong_to_is_ignored(world):
    a, b = world
    client = _browser(a.owner)
    response = client.post("/switch-organisation/", {"org_id": b.org.pk}, follow=True)
    html = response.content.decode()
    assert a.org.name in html and b.org.name not in html
    assert client.get("/api/organisation/").json()["id"] == a.org.pk


def test_member_of_both_sees_only_the_current_organisation(world):
    """A person in both organisations, with A selected, still cannot reach B's rows by id."""
    a, b = world
    Membership.all_tenants.create(organisation=b.org, user=a.owner, role=Role.OWNER)
    client = _browser(a.owner)
    session = client.session
    session["org_id"] = a.org.pk
    session.save()
    assert client.get("/api/organisation/").json()["id"] == a.org.pk
    assert client.get(f"/api/jobs/{b.job.pk}/").status_code == 404
    assert client.get(f"/jobs/{b.job.pk}/").status_code == 404
    assert b.key.prefix not in client.get("/keys/").content.decode()

    # Switching explicitly does give access: the scope follows the selected organisation.
    client.post("/switch-organisation/", {"org_id": b.org.pk})
    assert client.get(f"/api/jobs/{b.job.pk}/").status_code == 200
    assert client.get(f"/api/jobs/{a.job.pk}/").status_code == 404


@pytest.mark.parametrize(
    ("state", "word"),
    [("revoked", "revoked"), ("expired", "expired")],
)
def test_dead_keys_are_refused_with_a_reason(make_org, make_key, key_client, state, word):
    org, _ = make_org()
    expires_at = timezone.now() + (timedelta(days=1) if state == "revoked" else timedelta(seconds=1.5))
    key, secret = make_key(org, scopes=ALL_SCOPES, expires_at=expires_at)
    assert key_client(secret).get("/api/organisation/").status_code == 200  # alive before (and now cached)
    if state == "revoked":
        tenancy.api_key_revoke(organisation=org, key_id=key.pk)
    else:  # its time passes while the key is in the process's cache
        time.sleep(max(0.0, (expires_at - timezone.now()).total_seconds()) + 0.01)
    calls_before = UsageEvent.objects.for_org(org).filter(meter="api_calls").count()

    response = key_client(secret).get("/api/organisation/")

    assert response.status_code == 401
    assert word in response.json()["error"]["message"].lower(), response.json()
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert UsageEvent.objects.for_org(org).filter(meter="api_calls").count() == calls_before


def test_read_only_key_cannot_manage_keys(make_org, make_key, key_client):
    org, _ = make_org()
    key, secret = make_key(org, scopes=["read"])
    client = key_client(secret)
    created = client.post("/api/keys/", {"name": "escalate", "scopes": ["admin"]}, format="json")
    assert created.status_code == 403, created.content
    assert "scope" in created.json()["error"]["message"]
    assert client.delete(f"/api/keys/{key.pk}/").status_code == 403
    assert list(ApiKey.objects.for_org(org).values_list("pk", "revoked_at")) == [(key.pk, None)]
    assert client.get("/api/organisation/").status_code == 200  # the key itself works for reads
