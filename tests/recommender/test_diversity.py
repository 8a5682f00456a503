"""Diversity: at most max_per_category items of any one category, per request or as the organisation's
default, with the next best items filling the places; bad limits refused; the setting is the tenant's own."""

import pytest

pytestmark = pytest.mark.django_db
RECO = "/api/recommender/recommendations"


def _categories(answer) -> list[str]:
    return [c for item in answer["items"] for c in item["categories"]]


def test_a_limit_per_category_per_request_and_per_organisation(shop, user_client, make_org, make_member):
    org, owner = shop
    client = user_client(owner)
    query = {"user": "u0", "k": 6, "exclude_purchased": "false"}  # live popularity: A..F, mugs A, B, F
    everything = client.get(RECO, query).json()
    assert len(everything["items"]) == 6 and _categories(everything).count("mugs") == 3
    one_each = client.get(RECO, {**query, "max_per_category": 1}).json()
    assert sorted(_categories(one_each)) == ["mugs", "plates", "wrap"]
    expected, seen = [], set()  # the best of each category, in the unlimited answer's order
    for item in everything["items"]:
        if not seen & set(item["categories"]):
            expected.append(item["id"])
            seen |= set(item["categories"])
    assert [i["id"] for i in one_each["items"]] == expected
    two = client.get(RECO, {**query, "k": 5, "max_per_category": 2}).json()
    assert len(two["items"]) == 5 and _categories(two).count("mugs") == 2  # the next best fills the place

    assert client.put(
        "/api/recommender/settings/diversity", {"max_per_category": 1}, format="json"
    ).json() == {"max_per_category": 1}
    assert client.get("/api/recommender/settings/diversity").json() == {"max_per_category": 1}
    assert len(client.get(RECO, query).json()["items"]) == 3  # the organisation's default
    assert len(client.get(RECO, {**query, "max_per_category": 0}).json()["items"]) == 6  # 0: none here
    session = client.get(RECO, {"items": "A", "k": 5}).json()
    assert _categories(session).count("mugs") <= 1

    other, other_owner = make_org()
    assert user_client(other_owner).get("/api/recommender/settings/diversity").json() == {
        "max_per_category": None
    }
    assert client.put(
        "/api/recommender/settings/diversity", {"max_per_category": None}, format="json"
    ).json() == {"max_per_category": None}
    assert len(client.get(RECO, query).json()["items"]) == 6


def test_bad_limits_are_refused(shop, user_client, make_member):
    org, owner = shop
    client = user_client(owner)
    for value in ("-1", "101", "two", "1.5"):
        answer = client.get(RECO, {"user": "u0", "max_per_category": value})
        assert answer.status_code == 400 and answer.json()["error"]["message"], value
    for value in (0, 101, "x", True):
        answer = client.put("/api/recommender/settings/diversity", {"max_per_category": value}, format="json")
        assert answer.status_code == 400, value
    assert client.put("/api/recommender/settings/diversity", {}, format="json").status_code == 400
    viewer = user_client(make_member(org))
    assert (
        viewer.put("/api/recommender/settings/diversity", {"max_per_category": 2}, format="json").status_code
        == 403
    )
