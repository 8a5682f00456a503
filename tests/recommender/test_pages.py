"""The recommender page: counts, models and the explorer (a user's history and their recommendations with
why), for members of the organisation only."""

import pytest

from tests.recommender.conftest import train_now

pytestmark = pytest.mark.django_db


def test_the_explorer_shows_history_recommendations_and_why(shop, make_org, client):
    from tests.conftest import PASSWORD

    org, owner = shop
    train_now(org)
    assert client.login(username=owner.username, password=PASSWORD)
    page = client.get("/recommender/", {"user": "u0"}).content.decode()
    assert "6 items" in page and "61 events from 20 users" in page
    assert "itemknn" in page and "v1" in page
    assert "Red mug" in page  # u0's history
    assert "White plate" in page and "because of" in page
    assert "<h3>Recommended by v1 (Item-kNN)</h3>" in page  # the method's display name, as the train form has
    other, other_owner = make_org()
    client.logout()
    assert client.login(username=other_owner.username, password=PASSWORD)
    theirs = client.get("/recommender/", {"user": "u0"}).content.decode()
    assert "Red mug" not in theirs and "0 items" in theirs and "itemknn" not in theirs
