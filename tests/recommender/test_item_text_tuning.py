"""The item text tuned on behaviour: pairs from what users take one after another, a LoRA adapter trained by
the platform's embedding kind, activated by the promotion rule, and the catalogue embedded again by it."""

import random
from datetime import timedelta

import numpy as np
import pytest
from django.core.cache import cache
from django.utils import timezone

from core.billing.models import Meter, Plan, PlanLimit, UsageEvent
from core.jobs import services as jobs
from core.jobs.describe import job_sentence
from core.jobs.models import JobStatus, TrainingJob
from core.registry.models import Dataset, ModelVersion, VersionStatus
from recommender import pairs
from recommender.models import Item
from recommender.services import catalogue, events, text, tuning

COLOURS = ["Red", "Blue", "Green", "Cream", "Black"]
KITCHEN = [f"{c} {t}" for c in COLOURS for t in ("enamel mug", "teapot", "tea cosy", "tea tin")]
GARDEN = [f"{c} {t}" for c in COLOURS for t in ("plant pot", "watering can", "garden gloves", "seed tray")]


def test_pairs_follow_each_users_order_and_skip_what_says_nothing():
    texts = {"a": "mug", "b": "teapot", "c": "tin", "d": "mug", "e": "Teapot", "z": "unused"}
    timeline = [
        ("u1", "a", 1.0),
        ("u1", "b", 2.0),
        ("u1", "a", 3.0),  # seen before: its first time counts
        ("u1", "c", 4.0),
        ("u1", "gone", 5.0),  # no text (deleted): skipped
        ("u2", "d", 1.0),
        ("u2", "a", 2.0),  # another item with the same text: says nothing
        ("u3", "a", 1.0),
        ("u3", "e", 2.0),  # the same pair as u1's, case aside: kept once
    ]
    found, total = pairs.behaviour_pairs(timeline, texts, window=2)
    assert total == 3
    assert sorted(found) == [("mug", "teapot"), ("mug", "tin"), ("teapot", "tin")]
    one, _ = pairs.behaviour_pairs(timeline, texts, window=1)
    assert sorted(one) == [("mug", "teapot"), ("teapot", "tin")]
    capped, total = pairs.behaviour_pairs(timeline, texts, max_pairs=2)
    assert len(capped) == 2 and total == 3 and set(capped) <= set(found)
    assert pairs.behaviour_pairs(timeline, texts, max_pairs=2) == (capped, 3)  # seeded: the same sample
    with pytest.raises(ValueError):
        pairs.behaviour_pairs(timeline, texts, window=0)


def test_beyond_the_cap_the_pairs_most_users_made_are_kept():
    texts = {f"i{n}": f"item {n}" for n in range(200)}
    timeline = [(f"u{u}", item, float(step)) for u in range(40) for step, item in enumerate(("i0", "i1"))]
    timeline += [(f"v{n}", f"i{n}", 1.0) for n in range(2, 200)] + [
        (f"v{n}", f"i{n + 1}", 2.0) for n in range(2, 199)
    ]
    kept, total = pairs.behaviour_pairs(timeline, texts, window=1, max_pairs=10)
    assert total == 1 + 197 and len(kept) == 10
    assert ("item 0", "item 1") in kept  # made by 40 users; each of the others by one
    others = {
        p for s in range(5) for p in pairs.behaviour_pairs(timeline, texts, window=1, max_pairs=10, seed=s)[0]
    }
    assert len(others) > 10  # among equals, the seed draws


def _shop(org, prefix: str, titles: list[str], users: int) -> None:
    """Each user takes six items of one half of the catalogue, a day apart, over the last 60 days."""
    rows = [{"id": f"{prefix}{n}", "title": title} for n, title in enumerate(titles)]
    assert not catalogue.items_upsert(organisation=org, rows=rows).rejected
    now, evts, half = timezone.now(), [], len(titles) // 2
    rng = random.Random(7)
    for u in range(users):
        group = rng.sample(range(half) if u % 2 == 0 else range(half, len(titles)), 6)
        start = now - timedelta(days=60 - (u % 20))
        for step, n in enumerate(group):
            when = start + timedelta(days=step)
            evts.append(
                {
                    "id": f"{prefix}{u}-{n}",
                    "user": f"{prefix}u{u}",
                    "item": f"{prefix}{n}",
                    "type": "purchase",
                    "occurred_at": when.isoformat(),
                }
            )
    result = events.events_ingest(organisation=org, rows=evts)
    assert not result.rejected, result.rejected[:3]


@pytest.mark.django_db(transaction=True)
def test_tuned_item_text_is_trained_activated_and_embeds_the_catalogue_again(make_org, user_client):
    org, owner = make_org()
    other, _ = make_org()
    _shop(org, "k", KITCHEN + GARDEN, users=80)
    _shop(other, "x", [f"Other tenant's lamp {n}" for n in range(40)], users=80)
    assert text.items_embed_pending(organisation=org) == 40
    base = dict(Item.objects.for_org(org).values_list("external_id", "vector"))

    found, total = tuning.item_text_pairs(organisation=org)
    assert total == len(found) > tuning.MIN_PAIRS  # under the cap: all of them
    everything = {t for pair in found for t in pair}
    assert everything <= set(KITCHEN + GARDEN)  # this organisation's item texts, nobody else's
    assert not {(a, b) for a, b in found if (a in KITCHEN) != (b in KITCHEN)}  # no user crossed over

    answer = user_client(owner).post("/api/recommender/item-text/tune", {}, format="json")
    assert answer.status_code == 202, answer.content
    job = TrainingJob.objects.for_org(org).get(pk=answer.json()["job"])
    assert job.kind == tuning.TUNE_JOB and job.status == JobStatus.QUEUED
    assert not Dataset.objects.for_org(org).exists()  # the request read no events: the job builds the pairs
    charged = UsageEvent.ledger.filter(organisation=org, meter=Meter.TRAINING_JOBS).count()
    assert charged == 1  # one training job of the plan, pairs and training together
    cache.delete(f"reco:embed-queued:{org.pk}")
    jobs.job_execute(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.result["pairs"] == len(found) and job.result["pairs_found"] == total
    dataset = Dataset.objects.for_org(org).get(name=tuning.DATASET_NAME)
    assert dataset.task == "pairs" and job.params["dataset_id"] == dataset.pk
    assert UsageEvent.ledger.filter(organisation=org, meter=Meter.TRAINING_JOBS).count() == charged
    sentence = job_sentence(job)  # the page reads as the platform's training job's
    assert "of held-out item pairs. It is now the active model." in sentence, sentence
    version = ModelVersion.objects.for_org(org).get(app="recommender", task="item_text")
    assert version.training_job_id == job.pk
    assert version.status == VersionStatus.ACTIVE and version.kind == "embedding"
    assert version.manifest["hyperparameters"]["method"] == "lora"
    assert version.manifest["hyperparameters"]["learning_rate"] == pairs.TUNE_CONFIG["learning_rate"]
    assert 0 < version.metrics["mrr"] <= 1
    # on_activate queued the catalogue's re-embedding once the promotion committed
    assert cache.get(f"reco:embed-queued:{org.pk}") == 1

    assert text.items_pending(organisation=org).count() == 40  # every vector is of the base encoder
    assert text.items_embed_pending(organisation=org) == 40
    after = Item.objects.for_org(org).values_list("external_id", "vector", "embedder")
    assert {embedder for *_, embedder in after} == {f"version:{version.pk}"}
    moved = [
        float(np.frombuffer(bytes(vector), np.float32) @ np.frombuffer(bytes(base[key]), np.float32))
        for key, vector, _ in after
    ]
    assert all(c < 0.99999 for c in moved) and all(c > 0.5 for c in moved), moved  # tuned, not replaced
    assert not ModelVersion.objects.for_org(other).exists()
    page = user_client(owner).get("/recommender/")
    assert page.status_code == 200
    assert f'<a href="/models/{version.pk}/">v{version.version}</a>, the shared encoder tuned' in page.text


@pytest.mark.django_db
def test_too_little_behaviour_fails_the_job_with_the_reason_and_stores_nothing(make_org, user_client):
    org, owner = make_org()
    client = user_client(owner)
    answer = client.post("/api/recommender/item-text/tune", {}, format="json")
    assert answer.status_code == 202, answer.content
    jobs.job_execute(job_id=answer.json()["job"])
    job = TrainingJob.objects.for_org(org).get(pk=answer.json()["job"])
    assert job.status == JobStatus.FAILED and "at least 200 pairs" in job.error and "give 0." in job.error
    assert not Dataset.objects.for_org(org).exists() and not ModelVersion.objects.for_org(org).exists()
    page = client.post("/recommender/tune-text/", follow=True)
    assert page.status_code == 200 and b"builds pairs of items taken one after another" in page.content
    failed = client.get(f"/jobs/{job.pk}/")
    assert failed.status_code == 200 and b"at least 200 pairs" in failed.content
    assert b"read by the shared encoder, as it ships" in client.get("/recommender/").content


@pytest.mark.django_db
def test_tuning_past_the_plans_training_jobs_is_refused_at_once(make_org, user_client):
    org, owner = make_org()
    PlanLimit.objects.update_or_create(
        plan=Plan.objects.get(code="trial"), meter_id=Meter.TRAINING_JOBS, defaults={"limit": 0}
    )
    answer = user_client(owner).post("/api/recommender/item-text/tune", {}, format="json")
    assert answer.status_code == 402, answer.content
    assert answer.json()["error"]["details"]["meter"] == Meter.TRAINING_JOBS
    assert not TrainingJob.objects.for_org(org).exists()
