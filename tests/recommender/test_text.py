"""Item text vectors in the platform's vector index: only new or changed items are embedded, items nobody has
bought are served through their text (with why)."""

import pytest
from django.utils import timezone

from recommender.models import Item
from recommender.services import catalogue, events, serving, text
from tests.recommender.conftest import train_now

pytestmark = pytest.mark.django_db

COLD = {"id": "G", "title": "Blue mug with a red handle", "description": "A stoneware mug."}


def _ids(answer) -> list[str]:
    return [item["id"] for item in answer["items"]]


def test_only_new_or_changed_items_are_embedded(shop):
    org, _ = shop
    assert org.pk in text.organisations_with_items_to_embed()  # beat's sweep would queue a run
    assert text.items_embed_pending(organisation=org) == 6
    assert text.items_embed_pending(organisation=org) == 0
    assert org.pk not in text.organisations_with_items_to_embed()
    before = Item.objects.for_org(org).get(external_id="A").embedder
    catalogue.items_upsert(
        organisation=org,
        rows=[{"id": "A", "title": "Red mug", "categories": ["mugs"]}, {"id": "B", "title": "Navy mug"}],
    )
    b = Item.objects.for_org(org).get(external_id="B")
    assert b.vector is None and b.embedder == ""  # its text changed
    assert Item.objects.for_org(org).get(external_id="A").embedder == before  # the same text: kept
    assert text.items_embed_pending(organisation=org) == 1


def test_a_cold_item_is_served_through_its_text_with_why(shop):
    org, _ = shop
    catalogue.items_upsert(organisation=org, rows=[COLD])
    text.items_embed_pending(organisation=org)
    job = train_now(org, "hybrid")
    assert job.result["promoted"]
    events.events_ingest(
        organisation=org,
        rows=[
            {
                "id": "x1",
                "user": "fan",
                "item": "B",
                "type": "purchase",
                "occurred_at": timezone.now().isoformat(),
            }
        ],
    )
    answer = serving.recommendations_for_user(organisation=org, user="fan", k=10, filters=serving.Filters())
    assert answer["method"] == "hybrid" and "G" in _ids(answer), answer
    g = next(item for item in answer["items"] if item["id"] == "G")
    assert g["why"] == ["B"] and "mug" in g["why_words"]
    # an item added after training (the model does not know it) comes through the index by its text
    catalogue.items_upsert(
        organisation=org, rows=[{"id": "H", "title": "Navy blue mug", "categories": ["mugs"]}]
    )
    text.items_embed_pending(organisation=org)
    answer = serving.recommendations_for_user(organisation=org, user="fan", k=10, filters=serving.Filters())
    assert "H" in _ids(answer), answer
    # the similar items of an item nobody has bought: by text (no model knows it)
    similar = serving.items_similar(organisation=org, external_id="H", k=3, filters=serving.Filters())
    assert similar["items"][0]["id"] == "B" and similar["items"][0]["why"] == ["H"], similar
