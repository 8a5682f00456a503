"""Documents pushed through the API are classified by a real worker on the infer queue, and counted in the
trends; an organisation with no model keeps its documents pending."""

import pytest

from core.billing.models import UsageEvent
from finance_monitor.models import Document, TrendBucket
from finance_monitor.services import classification
from tests.finance_monitor.test_classification import TEXTS, install_defaults
from tests.worker import celery_worker, wait_for

BASE = "/api/finance-monitor"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_pushed_documents_are_classified_by_the_worker_and_trends_updated(
    make_org, make_key, key_client, settings
):
    organisation, _ = make_org()
    install_defaults(organisation, settings)
    # the default jobs queued a classification run, which the worker's start purges: forget it was queued
    classification.classify_started(organisation_id=organisation.pk)
    without, _ = make_org()
    client = key_client(make_key(organisation, scopes=("train", "read"))[1])
    waiting = key_client(make_key(without, scopes=("train",))[1])
    env = {"FM_DEFAULT_MODELS_ON_FIRST_USE": "false", "ML_SERVE_THREADS": "1"}
    with celery_worker(queues="infer", extra_env=env) as proc:
        pushed = waiting.post(f"{BASE}/documents/", {"text": "Gold rallies on weak dollar"}, format="json")
        assert pushed.status_code == 201
        batch = client.post(
            f"{BASE}/documents/batch", {"documents": [{"text": t} for t in TEXTS]}, format="json"
        )
        assert batch.json()["counts"]["created"] == 5
        docs = Document.objects.for_org(organisation)
        wait_for(lambda: not docs.filter(classified_at__isnull=True).exists(), timeout=180, proc=proc)
    listed = client.get(f"{BASE}/documents/", {"classified": "true"}).json()
    assert listed["count"] == 5 and all(d["topic"] and d["sentiment"] for d in listed["results"])
    overall = TrendBucket.objects.for_org(organisation).get(dimension="all", granularity="hour")
    assert overall.volume == 5
    charged = UsageEvent.objects.for_org(organisation).filter(meter="documents_classified")
    assert sum(e.quantity for e in charged) == 5
    # the organisation without models: its document waits (no default training here), nothing charged
    assert Document.objects.for_org(without).get().classified_at is None
    assert not UsageEvent.objects.for_org(without).filter(meter="documents_classified").exists()
    assert not TrendBucket.objects.for_org(without).exists()
