"""Idempotency-Key: a retry replays the first answer and runs nothing; new work under an old key is refused.

Every endpoint that accepts the header (predict, embed, the chatbot's answer) goes through one decorator:
predict runs here on a real model, the rest of the rules on the chatbot's answer endpoint (no model to
train), all against the real ledger.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from core.billing import idempotency
from core.billing.models import IdempotencyRecord, Meter, UsageEvent
from core.registry.models import ModelVersion
from tests.core.registry.trained import train_intent_model

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(make_org, make_key, key_client, tmp_path):
    """An organisation with a trained intent model and a predict key."""
    org, _ = make_org()
    train_intent_model(org, tmp_path)
    _, secret = make_key(org, scopes=["predict", "read"])
    return org, ModelVersion.objects.for_org(org).get(), key_client(secret)


@pytest.fixture
def bot(make_org, make_key, key_client):
    """answer(text, key) on the chatbot's answer endpoint of a new organisation -> (org, answer)."""

    def make():
        org, _ = make_org()
        client = key_client(make_key(org, scopes=["predict"])[1])

        def answer(text, key):
            return client.post(
                "/api/customer-service/answer", {"text": text}, format="json", HTTP_IDEMPOTENCY_KEY=key
            )

        return org, answer

    return make


def _predict(client, version, texts, key):
    return client.post(
        f"/api/models/{version.pk}/predict", {"texts": texts}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )


def _charged(org, meter=Meter.PREDICTIONS) -> float:
    return float(sum(e.quantity for e in UsageEvent.objects.for_org(org).filter(meter=meter)))


def test_predict_replays_a_retry_and_refuses_new_work_under_a_used_key(world):
    org, version, client = world
    first = _predict(client, version, ["My card has not arrived", "hi"], "retry-1")
    assert first.status_code == 200 and "Idempotent-Replayed" not in first.headers
    again = _predict(client, version, ["My card has not arrived", "hi"], "retry-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert _charged(org) == 2
    assert UsageEvent.objects.for_org(org).filter(meter=Meter.PREDICTIONS).count() == 1
    assert _charged(org, Meter.API_CALLS) == 1  # the replay is not a billable call either

    # The audit's case: five calls, one key, different texts. Only the first runs.
    batches = [[f"where is my card number {n}"] * (n + 1) for n in range(5)]
    answers = [_predict(client, version, texts, "same-key") for texts in batches]
    assert answers[0].status_code == 200
    for refused in answers[1:]:
        assert refused.status_code == 422, refused.content
        error = refused.json()["error"]
        assert error["code"] == "idempotency_key_reused" and error["details"] == {"field": "Idempotency-Key"}
    assert _charged(org) == 2 + 1
    # Another path is another request.
    embed = client.post(
        f"/api/models/{version.pk}/embed",
        {"texts": batches[0]},
        format="json",
        HTTP_IDEMPOTENCY_KEY="same-key",
    )
    assert embed.status_code == 422

    # Over 200 characters the key used to fail after the prediction ran (500, unmetered): now 400 first.
    too_long = _predict(client, version, ["my card"], "k" * 256)
    assert too_long.status_code == 400 and too_long.json()["error"]["details"] == {"field": "Idempotency-Key"}
    longest = [_predict(client, version, ["my card"], "k" * 255) for _ in range(2)]
    assert [r.status_code for r in longest] == [200, 200] and longest[1].headers[
        "Idempotent-Replayed"
    ] == "true"
    assert _charged(org) == 3 + 1


def test_a_duplicate_of_a_request_still_running_gets_409(bot):
    org, answer = bot()
    assert answer("Where can I park?", "slow-1").status_code == 200
    # The state a first request leaves while it runs: the key is claimed, no answer stored yet.
    IdempotencyRecord.objects.for_org(org).filter(key="slow-1").update(status_code=None, response=None)
    duplicate = answer("Where can I park?", "slow-1")
    assert duplicate.status_code == 409 and duplicate.json()["error"]["code"] == "idempotency_key_in_use"
    assert _charged(org) == 1
    # A claim whose request died long ago may be taken over.
    IdempotencyRecord.objects.for_org(org).filter(key="slow-1").update(
        created_at=timezone.now() - idempotency.ABANDONED_AFTER - timedelta(seconds=1)
    )
    taken_over = answer("Where can I park?", "slow-1")
    assert taken_over.status_code == 200 and "Idempotent-Replayed" not in taken_over.headers
    assert _charged(org) == 2


def test_the_answer_endpoint_replays_and_refuses_a_different_text(bot):
    org, answer = bot()
    first = answer("Where can I park?", "ask-1")
    assert first.status_code == 200
    again = answer("Where can I park?", "ask-1")
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert answer("Something else entirely", "ask-1").status_code == 422
    assert _charged(org) == 1


def test_a_refused_request_frees_its_key(bot):
    org, answer = bot()
    assert answer("", "fix-and-retry").status_code == 400
    assert not IdempotencyRecord.objects.for_org(org).filter(key="fix-and-retry").exists()
    ok = answer("Where can I park?", "fix-and-retry")
    assert ok.status_code == 200 and "Idempotent-Replayed" not in ok.headers
    assert _charged(org) == 1


def test_keys_belong_to_one_organisation(bot):
    (org, answer), (other, other_answer) = bot(), bot()
    assert answer("Where can I park?", "shared-name").status_code == 200
    theirs = other_answer("Can I pay by card?", "shared-name")
    assert theirs.status_code == 200 and "Idempotent-Replayed" not in theirs.headers
    assert _charged(org) == 1 and _charged(other) == 1


def test_an_expired_key_runs_and_is_charged_again_and_is_swept(bot):
    org, answer = bot()
    assert answer("Where can I park?", "old").status_code == 200
    IdempotencyRecord.objects.for_org(org).filter(key="old").update(expires_at=timezone.now())
    later = answer("Where can I park?", "old")
    assert later.status_code == 200 and "Idempotent-Replayed" not in later.headers
    assert _charged(org) == 2
    IdempotencyRecord.objects.for_org(org).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert idempotency.idempotency_sweep() == 1
    assert not IdempotencyRecord.objects.for_org(org).exists()


@pytest.mark.parametrize(
    "key",
    ["k" * 256, "x" * 300, "caf\u00e9", "tab\there", ""],
    ids=["256-chars", "300-chars", "non-ascii", "control-char", "empty"],
)
def test_a_malformed_key_is_refused_before_anything_runs(bot, key):
    org, answer = bot()
    response = answer("Where can I park?", key)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["details"] == {"field": "Idempotency-Key"}
    assert _charged(org) == 0 and _charged(org, Meter.API_CALLS) == 0
    assert not IdempotencyRecord.objects.for_org(org).exists()


def test_a_key_on_an_endpoint_that_does_not_honour_it_is_refused_and_nothing_runs(
    make_org, make_key, key_client
):
    """A retry of an upload or a create would run (and be charged) twice: the header is refused."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from core.registry.models import Dataset
    from core.tenancy.models import ApiKey

    org, _ = make_org()
    client = key_client(make_key(org, scopes=["read", "train", "admin"])[1])
    keys_before = ApiKey.objects.for_org(org).count()
    upload = SimpleUploadedFile(
        "faq.csv", b"text,label\n" + b"".join(b"hello %d,greet\nbye %d,leave\n" % (i, i) for i in range(9))
    )
    refused = [
        client.post(
            "/api/datasets/",
            {"file": upload, "name": "faq", "task": "classification"},
            HTTP_IDEMPOTENCY_KEY="k-1",
        ),
        client.post(
            "/api/keys/", {"name": "pipe", "scopes": ["read"]}, format="json", HTTP_IDEMPOTENCY_KEY="k-2"
        ),
        client.delete(f"/api/keys/{ApiKey.objects.for_org(org).get().pk}/", HTTP_IDEMPOTENCY_KEY="k-3"),
    ]
    for response in refused:
        assert response.status_code == 400, response.content
        error = response.json()["error"]
        assert error["details"] == {"field": "Idempotency-Key"}
        assert "does not accept Idempotency-Key" in error["message"]
    assert not Dataset.objects.for_org(org).exists()
    assert ApiKey.objects.for_org(org).filter(revoked_at=None).count() == keys_before
    assert not IdempotencyRecord.objects.for_org(org).exists() and _charged(org, Meter.API_CALLS) == 0
    # reads ignore the header; without it the same upload runs
    assert client.get("/api/datasets/", HTTP_IDEMPOTENCY_KEY="k-4").status_code == 200
    upload.seek(0)
    created = client.post("/api/datasets/", {"file": upload, "name": "faq", "task": "classification"})
    assert created.status_code == 201, created.content
