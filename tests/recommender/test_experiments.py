"""Experiments: stable assignment by hash, answers served by the arm's version with the experiment named,
impressions and feedback credited within the window, results with Wilson and Newcombe intervals, one running
experiment at a time, bad input and tenant isolation (API and pages)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.registry.models import ModelVersion
from recommender import abstats
from recommender.models import Impression
from recommender.services import experiments
from tests.conftest import PASSWORD
from tests.recommender.conftest import train_now

pytestmark = pytest.mark.django_db
RECO = "/api/recommender/recommendations"
EXPERIMENTS = "/api/recommender/experiments/"


@pytest.fixture
def two_versions(shop):
    """The shop with an item-kNN version (active) and a popularity version (ready)."""
    org, owner = shop
    train_now(org, method="itemknn")
    train_now(org, method="popularity")
    versions = {v.method: v for v in ModelVersion.objects.for_org(org).filter(app="recommender")}
    assert {v.status for v in versions.values()} == {"active", "ready"}
    return org, owner, versions["itemknn"], versions["popularity"]


def _event(id_: str, user: str, item: str, type_: str, when=None) -> dict:
    when = when or timezone.now()
    return {"id": id_, "user": user, "item": item, "type": type_, "occurred_at": when.isoformat()}


def test_assignment_is_stable_and_follows_the_share():
    arms = [experiments.arm_for(experiment_id=7, subject=f"user-{n}", share_b=0.3) for n in range(4000)]
    again = [experiments.arm_for(experiment_id=7, subject=f"user-{n}", share_b=0.3) for n in range(4000)]
    assert arms == again
    assert 0.27 < arms.count("B") / len(arms) < 0.33
    other = [experiments.arm_for(experiment_id=8, subject=f"user-{n}", share_b=0.3) for n in range(4000)]
    assert other != arms  # another experiment reshuffles the users


def test_wilson_and_newcombe_match_the_published_figures():
    half = abstats.wilson(5, 10)
    assert half.rate == 0.5 and round(half.low, 4) == 0.2366 and round(half.high, 4) == 0.7634
    assert abstats.wilson(0, 0).rate is None and abstats.difference(abstats.wilson(0, 0), half).value is None
    zero = abstats.wilson(0, 20)
    assert zero.low == 0.0 and 0.16 < zero.high < 0.17
    # Newcombe (1998), Stat Med 17:873, method 10: 56/70 - 48/80 = 0.2000, 95% interval 0.0524 to 0.3339
    d = abstats.difference(abstats.wilson(48, 80), abstats.wilson(56, 70))
    assert round(d.value, 4) == 0.2 and round(d.low, 4) == 0.0524 and round(d.high, 4) == 0.3339
    with pytest.raises(ValueError):
        abstats.wilson(3, 2)
    for trials in range(1, 200):  # the interval holds the rate at the ends too (no rounding past 0 or 1)
        none, every = abstats.wilson(0, trials), abstats.wilson(trials, trials)
        assert none.low == 0.0 <= none.high and every.low <= every.high == 1.0
        for successes in range(trials + 1):
            one = abstats.wilson(successes, trials)
            assert one.low <= one.rate <= one.high


def test_an_experiment_serves_both_arms_and_credits_feedback(two_versions, user_client):
    org, owner, knn, pop = two_versions
    client = user_client(owner)
    made = client.post(
        EXPERIMENTS,
        {"name": "knn vs pop", "version_a": knn.pk, "version_b": pop.pk, "share_b": 0.5, "window_hours": 2},
        format="json",
    )
    assert made.status_code == 201 and made.json()["status"] == "draft"
    experiment_id = made.json()["id"]
    answer = client.get(RECO, {"user": "u0", "k": 2}).json()
    assert answer["experiment"] is None and answer["model_version"] == knn.pk  # a draft serves nothing
    assert client.post(f"{EXPERIMENTS}{experiment_id}/start").json()["status"] == "running"

    arm = {
        f"u{n}": experiments.arm_for(experiment_id=experiment_id, subject=f"u{n}", share_b=0.5)
        for n in range(20)
    }
    a_user = next(u for u, a in arm.items() if a == "A")
    b_user = next(u for u, a in arm.items() if a == "B")
    served = {}
    for user in (a_user, b_user, a_user):
        answer = client.get(RECO, {"user": user, "k": 3}).json()
        assert answer["experiment"] == {"id": experiment_id, "name": "knn vs pop", "arm": arm[user]}
        assert answer["model_version"] == (knn.pk if arm[user] == "A" else pop.pk)
        served[user] = [item["id"] for item in answer["items"]]
    session = client.get(RECO, {"items": "C", "session": "s-42", "k": 2}).json()
    assert session["session"] == "s-42" and session["experiment"]["arm"] == experiments.arm_for(
        experiment_id=experiment_id, subject="s-42", share_b=0.5
    )
    assert client.get(RECO, {"items": "C", "k": 2}).json()["experiment"] is None  # no session id: no arm
    assert client.get("/api/recommender/items/A/similar").json()["experiment"] is None
    assert Impression.objects.for_org(org).count() == 4

    hour_ago = timezone.now() - timedelta(hours=1)
    feedback = [
        _event("c1", a_user, served[a_user][0], "click"),
        _event("c1", a_user, served[a_user][0], "click"),  # the same id twice: stored and counted once
        _event("p1", b_user, served[b_user][0], "purchase"),
        _event("v1", b_user, served[b_user][1], "view"),  # a view is not a click
        _event("x1", "u19", "A", "click"),  # never served under the experiment
        _event("o1", a_user, served[a_user][1], "click", when=hour_ago),  # before the answer
        _event("s1", "s-42", session["items"][0]["id"], "add_to_cart"),  # the session's feedback
    ]
    stored = client.post("/api/recommender/events/batch", {"events": feedback}, format="json").json()
    assert stored["created"] == 6 and stored["existing"] == 1
    again = client.post("/api/recommender/events/batch", {"events": feedback[:1]}, format="json").json()
    assert again["existing"] == 1

    results = client.get(f"{EXPERIMENTS}{experiment_id}/results").json()
    a, b = results["arms"]["A"], results["arms"]["B"]
    arm_of_session = session["experiment"]["arm"]
    assert a["impressions"] == 2 + (arm_of_session == "A") and b["impressions"] == 1 + (arm_of_session == "B")
    assert a["model_version"] == knn.pk and b["method"] == "popularity"
    assert a["click_through"]["successes"] == 1 + (
        arm_of_session == "A"
    )  # the latest of a_user's two answers
    assert b["click_through"]["successes"] == 1 + (arm_of_session == "B")  # a purchase is a click too
    assert b["conversion"]["successes"] == 1 and a["conversion"]["successes"] == 0
    for metric in ("click_through", "conversion"):
        for one in (a, b):
            assert one[metric]["low"] <= one[metric]["rate"] <= one[metric]["high"]
        d = results["difference_b_minus_a"][metric]
        assert d["low"] <= d["value"] <= d["high"]
        assert d["value"] == pytest.approx(b[metric]["rate"] - a[metric]["rate"])

    # feedback after the window is not credited
    late = Impression.objects.for_org(org).filter(subject=b_user).get()
    Impression.all_tenants.filter(pk=late.pk).update(
        served_at=timezone.now() - timedelta(hours=3), clicked=False
    )
    client.post(
        "/api/recommender/events/batch",
        {"events": [_event("c9", b_user, served[b_user][2], "click")]},
        format="json",
    )
    late.refresh_from_db()
    assert not late.clicked

    assert client.post(f"{EXPERIMENTS}{experiment_id}/stop").json()["status"] == "stopped"
    after = client.get(RECO, {"user": b_user, "k": 2}).json()
    assert after["experiment"] is None and after["model_version"] == knn.pk
    assert (
        client.post(f"{EXPERIMENTS}{experiment_id}/start").status_code == 409
    )  # a stopped one stays stopped
    assert client.post(f"{EXPERIMENTS}{experiment_id}/stop").status_code == 409


def test_one_running_experiment_and_bad_input(two_versions, user_client, make_org, make_member):
    org, owner, knn, pop = two_versions
    client = user_client(owner)
    body = {"name": "one", "version_a": knn.pk, "version_b": pop.pk}
    first = client.post(EXPERIMENTS, body, format="json").json()["id"]
    second = client.post(EXPERIMENTS, {**body, "name": "two"}, format="json").json()["id"]
    assert client.post(f"{EXPERIMENTS}{first}/start").status_code == 200
    refused = client.post(f"{EXPERIMENTS}{second}/start")
    assert refused.status_code == 409 and "stop it first" in refused.json()["error"]["message"]
    for bad in (
        {**body, "version_b": knn.pk},
        {**body, "share_b": 0},
        {**body, "share_b": 1.5},
        {**body, "window_hours": 0},
        {**body, "window_hours": 10_000},
        {**body, "name": ""},
        {**body, "version_a": "x"},
        {**body, "colour": "red"},
        {"name": "no versions"},
    ):
        answer = client.post(EXPERIMENTS, bad, format="json")
        assert answer.status_code == 400, bad
        assert answer.json()["error"]["message"]
    long_session = client.get(RECO, {"items": "A", "session": "s" * 201})
    assert long_session.status_code == 400 and "session" in long_session.json()["error"]["message"]
    ModelVersion.all_tenants.filter(pk=pop.pk).update(kind="classifier")
    wrong_kind = client.post(EXPERIMENTS, body, format="json")
    assert wrong_kind.status_code == 400 and "not a recommender" in wrong_kind.json()["error"]["message"]
    assert client.post(f"{EXPERIMENTS}999999/start").status_code == 404

    viewer = make_member(org)
    as_viewer = user_client(viewer)
    assert as_viewer.get(EXPERIMENTS).json()["count"] == 2
    assert as_viewer.post(EXPERIMENTS, body, format="json").status_code == 403
    assert as_viewer.post(f"{EXPERIMENTS}{first}/stop").status_code == 403


def test_tenants_cannot_reach_each_others_experiments(two_versions, user_client, make_org, client):
    org, owner, knn, pop = two_versions
    made = user_client(owner).post(
        EXPERIMENTS, {"name": "mine", "version_a": knn.pk, "version_b": pop.pk}, format="json"
    )
    mine = made.json()["id"]
    other, other_owner = make_org()
    theirs = user_client(other_owner)
    borrowed = theirs.post(
        EXPERIMENTS, {"name": "x", "version_a": knn.pk, "version_b": pop.pk}, format="json"
    )
    assert borrowed.status_code == 404 and "No model version" in borrowed.json()["error"]["message"]
    assert theirs.get(EXPERIMENTS).json()["count"] == 0
    for path in ("", "results"):
        assert theirs.get(f"{EXPERIMENTS}{mine}/{path}").status_code == 404
    for action in ("start", "stop"):
        assert theirs.post(f"{EXPERIMENTS}{mine}/{action}").status_code == 404
    assert client.login(username=other_owner.username, password=PASSWORD)
    assert client.get(f"/recommender/experiments/{mine}/").status_code == 404
    assert client.post(f"/recommender/experiments/{mine}/start").status_code == 404
    assert "mine" not in client.get("/recommender/experiments/").content.decode()


def test_the_experiment_pages(two_versions, client, make_member):
    org, owner, knn, pop = two_versions
    assert client.login(username=owner.username, password=PASSWORD)
    page = client.get("/recommender/experiments/")
    assert page.status_code == 200 and "No experiment yet" in page.content.decode()
    bad = client.post(
        "/recommender/experiments/",
        {"name": "same", "version_a": knn.pk, "version_b": knn.pk, "share_b": "0.5", "window_hours": "24"},
    )
    assert bad.status_code == 400 and "two different versions" in bad.content.decode()
    made = client.post(
        "/recommender/experiments/",
        {
            "name": "page test",
            "version_a": knn.pk,
            "version_b": pop.pk,
            "share_b": "0.5",
            "window_hours": "24",
        },
    )
    assert made.status_code == 302
    detail = made["Location"]
    started = client.post(f"{detail}start", follow=True).content.decode()
    assert "Status <strong>running</strong>" in started and "Stop" in started
    assert client.get(RECO, {"user": "u0"}).json()["experiment"]["name"] == "page test"
    results = client.get(detail).content.decode()
    assert "page test" in results and "B minus A" in results and "v1 itemknn" in results
    assert "<td>1</td>" in results and "no impressions on one arm yet" in results
    explorer = client.get("/recommender/", {"user": "u1"}).content.decode()
    assert "experiment page test, arm" in explorer
    assert Impression.objects.for_org(org).count() == 1  # the explorer (staff looking) leaves none
    viewer = make_member(org)
    client.logout()
    assert client.login(username=viewer.username, password=PASSWORD)
    assert "page test" in client.get("/recommender/experiments/").content.decode()
    assert client.post(f"{detail}stop").status_code == 403
    assert client.post("/recommender/experiments/", {"name": "v"}).status_code == 403


def test_old_impressions_are_pruned_in_batches_and_the_results_do_not_change(two_versions, settings):
    org, _, knn, pop = two_versions
    experiment = experiments.experiment_create(
        organisation=org, name="prune", version_a=knn.pk, version_b=pop.pk, window_hours=24
    )
    experiments.experiment_start(organisation=org, experiment_id=experiment.pk)
    for n in range(7):
        arm = "A" if n % 2 else "B"
        experiments.impression_record(
            organisation=org, experiment=experiment, arm=arm, subject=f"s{n}", items=["A", "B"]
        )
    rows = list(Impression.objects.for_org(org).order_by("id"))
    now = timezone.now()
    ages = [40, 40, 40, 40, 31, 20, 1]  # days: five past the retention, two inside it
    for row, days, clicked in zip(rows, ages, [True, False, True, False, True, True, False], strict=True):
        row.served_at, row.clicked, row.converted = now - timedelta(days=days), clicked, clicked and days > 35
        row.save()
    before = experiments.experiment_results(organisation=org, experiment_id=experiment.pk)["arms"]

    settings.RECOMMENDER_IMPRESSION_RETENTION_DAYS = 7  # below the longest feedback window: 30 days hold
    assert experiments.impressions_retention_days() == 30
    assert experiments.impressions_prune(now=now, batch=2) == 5
    left = Impression.objects.for_org(org)
    assert sorted((now - r.served_at).days for r in left) == [1, 20]
    experiment.refresh_from_db()
    assert experiment.pruned == {
        "A": {"n": 2, "clicks": 0, "conversions": 0},
        "B": {"n": 3, "clicks": 3, "conversions": 2},
    }
    after = experiments.experiment_results(organisation=org, experiment_id=experiment.pk)["arms"]
    assert after == before and after["A"]["impressions"] + after["B"]["impressions"] == 7
    assert experiments.impressions_prune(now=now) == 0  # nothing left: the counts are not added twice
    experiment.refresh_from_db()
    assert experiment.pruned["B"]["n"] == 3
    settings.RECOMMENDER_IMPRESSION_RETENTION_DAYS = 60
    assert experiments.impressions_prune(now=now + timedelta(days=45)) == 1  # the 20-day-old one is 65 now


def test_a_version_a_running_experiment_serves_cannot_be_archived(two_versions, user_client):
    """Archived under a running experiment, the version kept serving its arm (audit 18): the registry asks the
    products (the contract's ``version_in_use``) and refuses with 409 naming the experiment."""
    org, owner, knn, pop = two_versions
    client = user_client(owner)
    made = client.post(
        EXPERIMENTS, {"name": "knn vs pop", "version_a": knn.pk, "version_b": pop.pk}, format="json"
    ).json()
    assert client.post(f"/api/models/{pop.pk}/archive/").status_code == 200  # a draft's version may go
    pop.refresh_from_db()
    assert pop.status == "archived"
    train_now(org, method="popularity")
    other = ModelVersion.objects.for_org(org).filter(app="recommender").latest("pk")
    made = client.post(
        EXPERIMENTS, {"name": "knn vs new pop", "version_a": knn.pk, "version_b": other.pk}, format="json"
    ).json()
    assert client.post(f"{EXPERIMENTS}{made['id']}/start").json()["status"] == "running"
    refused = client.post(f"/api/models/{other.pk}/archive/")
    assert refused.status_code == 409
    assert "running experiment 'knn vs new pop'" in refused.json()["error"]["message"]
    other.refresh_from_db()
    assert other.status == "ready"
    assert client.post(f"{EXPERIMENTS}{made['id']}/stop").json()["status"] == "stopped"
    assert client.post(f"/api/models/{other.pk}/archive/").status_code == 200


def test_the_new_experiment_form_starts_with_the_active_version_as_the_control(two_versions, client):
    """A (the control) = the active version, B = the newest other one; the choices name methods in words."""
    import re

    org, owner, knn, pop = two_versions  # item-kNN v1 active, popularity v2 ready (the newest)
    assert client.login(username=owner.username, password=PASSWORD)
    page = client.get("/recommender/experiments/").content.decode()

    def selected(field: str) -> list[str]:
        select = re.search(rf'<select name="{field}"[^>]*>(.*?)</select>', page, re.S)
        assert select is not None, field
        return re.findall(r'<option value="(\d+)" selected>', select.group(1))

    assert selected("version_a") == [str(knn.pk)] and selected("version_b") == [str(pop.pk)]
    assert f'<option value="{knn.pk}" selected>v1 Item-kNN (active)</option>' in page
