"""A small shop for serving tests: two baskets that go together (mugs A+B, plates C+D), a popular loner
(E) and a teapot (F) that only u19 bought, by users u0..u19 an hour ago. Items nobody interacted with are
not in a collaborative model and are not served (the text tower will reach them)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.jobs import services as jobs
from core.jobs.models import JobStatus, TrainingJob
from recommender.services import catalogue, events, training

ITEMS = [
    {"id": "A", "title": "Red mug", "categories": ["mugs"], "price": "5"},
    {"id": "B", "title": "Blue mug", "categories": ["mugs"], "price": "6"},
    {"id": "C", "title": "White plate", "categories": ["plates"], "price": "12"},
    {"id": "D", "title": "Green plate", "categories": ["plates"], "price": "15"},
    {"id": "E", "title": "Gift bag", "categories": ["wrap"], "price": "1"},
    {"id": "F", "title": "Teapot", "categories": ["mugs"], "price": "30"},
]


def shop_events(prefix: str = "") -> list[dict]:
    when = (timezone.now() - timedelta(hours=1)).isoformat()
    earlier = (timezone.now() - timedelta(hours=2)).isoformat()  # F is not u19's last item (held out)
    rows = []
    for u in range(20):
        basket = ["A", "B"] if u < 10 else ["C", "D"]
        for item in [*basket, "E", *(["F"] if u == 19 else [])]:
            rows.append(
                {
                    "id": f"{prefix}{u}-{item}",
                    "user": f"u{u}",
                    "item": item,
                    "type": "purchase",
                    "occurred_at": earlier if item == "F" else when,
                }
            )
    return rows


def train_now(organisation, method: str = "itemknn"):
    """Run the training job in this process (the worker test runs it on a real worker)."""
    job = training.recommender_train_start(organisation=organisation, config={"method": method})
    jobs.job_execute(job_id=job.pk)
    job = TrainingJob.objects.for_org(organisation).get(pk=job.pk)
    assert job.status == JobStatus.SUCCEEDED, job.error
    return job


@pytest.fixture
def shop(make_org):
    org, owner = make_org()
    catalogue.items_upsert(organisation=org, rows=ITEMS)
    result = events.events_ingest(organisation=org, rows=shop_events())
    assert result.created == 61 and not result.rejected
    return org, owner
