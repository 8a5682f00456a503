"""Watch-lists: tagging robust to common-word tickers, mentions on ingest, the API and its tenants."""

import pytest

from bench.entity_tagging import load, score
from finance_monitor.models import Mention
from finance_monitor.services import documents as docs
from finance_monitor.services.entities import EntitySpec, naive_tag, tag

BASE = "/api/finance-monitor"
ON = EntitySpec(1, "company", "ON Semiconductor", "ON", ("onsemi",))
ALL = EntitySpec(2, "company", "Allstate", "ALL")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("$ON jumps premarket", {1}),
        ("Turn on the lights", set()),
        ("The deal is ON for Monday", set()),
        ("ON shares fell 3%", {1}),
        ("Shares of ALL rose", {2}),
        ("NYSE:ALL hit a high", {2}),
        ("ALL eyes on the Fed", set()),
        ("ALL SHARES FELL ON THE NEWS TODAY", set()),  # shouting: capitals say nothing
        ("onsemi and Allstate report", {1, 2}),
        ("Allstate (ALL) beat estimates", {2}),
    ],
)
def test_common_word_tickers_need_context(text, expected):
    assert {key for key, _ in tag(text, [ON, ALL])} == expected


def test_tagger_beats_the_naive_peer_on_the_labelled_set():
    specs, rows = load()
    assert len(rows) >= 100
    ours, peer = score(tag, specs, rows), score(naive_tag, specs, rows)
    assert ours["precision"] >= 0.95 and ours["recall"] >= 0.95
    assert peer["precision"] < 0.6  # the common words are what the set is about


@pytest.mark.django_db
def test_watchlist_api_tags_new_documents_and_filters(make_org, user_client):
    organisation, owner = make_org()
    client = user_client(owner)
    entry = client.post(
        f"{BASE}/watchlist/",
        {"kind": "company", "name": "ON Semiconductor", "ticker": "$on", "aliases": ["onsemi"]},
        format="json",
    )
    assert entry.status_code == 201 and entry.json()["ticker"] == "ON"
    twice = client.post(f"{BASE}/watchlist/", {"kind": "company", "name": "ON Semiconductor"}, format="json")
    assert twice.status_code == 400 and "already" in twice.json()["error"]["message"]
    bad = client.post(f"{BASE}/watchlist/", {"kind": "ticker", "name": "x"}, format="json")
    assert bad.status_code == 400
    docs.documents_ingest(
        organisation=organisation,
        items=[docs.DocumentIn(text="$ON rallies"), docs.DocumentIn(text="Prices turn on a dime")],
    )
    assert Mention.objects.for_org(organisation).count() == 1
    tagged = client.get(f"{BASE}/documents/?entity={entry.json()['id']}").json()
    assert [d["text"] for d in tagged["results"]] == ["$ON rallies"]
    # another organisation sees none of it
    _, other_owner = make_org()
    other = user_client(other_owner)
    assert other.get(f"{BASE}/watchlist/{entry.json()['id']}/").status_code == 404
    assert other.delete(f"{BASE}/watchlist/{entry.json()['id']}/").status_code == 404
    assert other.get(f"{BASE}/watchlist/").json()["count"] == 0
    assert other.get(f"{BASE}/documents/?entity={entry.json()['id']}").json()["count"] == 0
    assert client.delete(f"{BASE}/watchlist/{entry.json()['id']}/").status_code == 204


@pytest.mark.django_db
def test_an_organisation_keeps_at_most_2000_watch_list_entries(make_org, user_client):
    """Every ingested document is tagged against the whole watch-list: the 2,001st entry is a 400 saying the
    cap; editing an entry is not adding one; deleting one makes room."""
    from finance_monitor.models import Entity
    from finance_monitor.services.entities import MAX_ENTRIES

    organisation, owner = make_org()
    Entity.all_tenants.bulk_create(
        [Entity(organisation=organisation, kind="keyword", name=f"word {n}") for n in range(MAX_ENTRIES)]
    )
    client = user_client(owner)
    over = client.post(f"{BASE}/watchlist/", {"kind": "company", "name": "Acme"}, format="json")
    assert over.status_code == 400
    assert over.json()["error"]["message"] == (
        "An organisation keeps at most 2,000 watch-list entries: delete one to add another."
    )
    first = Entity.objects.for_org(organisation).order_by("pk").first()
    edit = {"kind": "company", "name": "Acme"}
    assert client.put(f"{BASE}/watchlist/{first.pk}/", edit, format="json").status_code == 200
    assert client.delete(f"{BASE}/watchlist/{first.pk}/").status_code == 204
    again = client.post(f"{BASE}/watchlist/", {"kind": "company", "name": "Acme"}, format="json")
    assert again.status_code == 201 and Entity.objects.for_org(organisation).count() == MAX_ENTRIES
