"""The hybrid ranker on a real worker from the shipped Online Retail slice: the catalogue is embedded by the
``infer`` queue's task after the upsert, the hybrid trains on the ``train`` queue with a metric floor, and an
item added afterwards, which nobody has bought, is served through its text, with why."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.jobs.models import JobStatus, TrainingJob
from core.registry.models import ModelVersion, VersionStatus
from recommender.models import Item
from tests.recommender.test_training_worker import _load
from tests.worker import celery_worker, wait_for

HYBRID_NDCG_FLOOR = 0.045  # measured 0.056 on this slice (EASE 0.051, popularity 0.014); broken lands near 0
HEART = "85123A"  # WHITE HANGING HEART T-LIGHT HOLDER, bought by many in the slice
NEW = {
    "id": "NEW-HEART",
    "title": "WHITE HANGING HEART T-LIGHT HOLDER LARGE",
    "description": "A larger white hanging heart tealight holder.",
}


def _embedded(org, external_id: str | None = None) -> bool:
    items = Item.objects.for_org(org).filter(deleted=False)
    if external_id is not None:
        items = items.filter(external_id=external_id)
    return items.exists() and not items.filter(vector__isnull=True).exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_hybrid_trains_on_a_worker_and_serves_a_cold_item_through_its_text(make_org, user_client):
    org, owner = make_org()
    client = user_client(owner)
    with celery_worker(queues="train,infer") as proc:
        _load(org)  # the upserts queue the embedding task after commit
        wait_for(lambda: _embedded(org), timeout=240, proc=proc)
        config = {"method": "hybrid", "ease_lambdas": [100], "decay_days": [90]}  # one setting: test time
        answer = client.post("/api/recommender/train", {"config": config}, format="json")
        assert answer.status_code == 202, answer.content
        job_id = answer.json()["job"]
        wait_for(
            lambda: TrainingJob.objects.for_org(org).get(pk=job_id).status in ("succeeded", "failed"),
            timeout=240,
            proc=proc,
        )
        job = TrainingJob.objects.for_org(org).get(pk=job_id)
        assert job.status == JobStatus.SUCCEEDED, job.error
        # an item nobody has bought, added after training: embedded by the worker, then served by its text
        added = client.post("/api/recommender/items/batch", {"items": [NEW]}, format="json")
        assert added.status_code in (200, 201), added.content
        wait_for(lambda: _embedded(org, NEW["id"]), timeout=120, proc=proc)
    version = ModelVersion.objects.for_org(org).get(pk=job.result["model_version"])
    assert version.method == "hybrid" and version.status == VersionStatus.ACTIVE
    assert version.metrics["ndcg@10"] >= HYBRID_NDCG_FLOOR, version.metrics
    assert version.metrics["weight_collab"] == 1.0 and version.metrics["validation_users"] >= 10

    bought = {
        "id": "cold-fan-1",
        "user": "cold-fan",
        "item": HEART,
        "type": "purchase",
        "occurred_at": (timezone.now() - timedelta(minutes=1)).isoformat(),
    }
    sent = client.post("/api/recommender/events/batch", {"events": [bought]}, format="json")
    assert sent.status_code in (200, 201) and sent.json()["created"] == 1, sent.content
    answer = client.get("/api/recommender/recommendations", {"user": "cold-fan", "k": 20}).json()
    assert answer["model_version"] == version.pk and answer["method"] == "hybrid"
    by_id = {item["id"]: item for item in answer["items"]}
    assert NEW["id"] in by_id, [item["title"] for item in answer["items"]]
    assert by_id[NEW["id"]]["why"] == [HEART] and "heart" in by_id[NEW["id"]]["why_words"]
    assert all(item["why"] for item in answer["items"][:10])  # the hybrid explains what it ranks first
    # the similar items of the new item (no model knows it): by text, the heart holder first
    similar = client.get(f"/api/recommender/items/{NEW['id']}/similar", {"k": 5}).json()
    assert similar["items"][0]["id"] == HEART and similar["items"][0]["why"] == [NEW["id"]]
