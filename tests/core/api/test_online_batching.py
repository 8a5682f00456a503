"""Concurrent /api/models/{id}/predict requests through the ASGI app share forward passes."""

import asyncio
import json

import pytest
from channels.testing import HttpCommunicator

from core.asgi import application
from core.billing import deferred, flusher
from core.billing.models import UsageEvent
from core.registry.models import ModelVersion
from core.registry.services import serving
from tests.core.registry.trained import train_intent_model

TEXTS = [
    "My card still has not arrived",
    "How do I top up by bank transfer?",
    "The ATM kept my card",
    "Why was I charged a fee for my transfer?",
    "I want to change my PIN",
    "Where is my new card?",
    "Can I get a refund for this payment?",
    "My top-up did not go through",
]


@pytest.fixture
def version(make_org, make_key, tmp_path):
    org, _ = make_org()
    train_intent_model(org, tmp_path)
    _, secret = make_key(org, scopes=["predict"])
    return ModelVersion.objects.for_org(org).get(), secret


async def _predict(version_id: int, secret: str, text: str) -> tuple[int, dict]:
    body = json.dumps({"texts": [text]}).encode()
    communicator = HttpCommunicator(
        application,
        "POST",
        f"/api/models/{version_id}/predict",
        body=body,
        headers=[
            (b"host", b"localhost"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {secret}".encode()),
            (b"content-type", b"application/json"),
        ],
    )
    response = await communicator.get_response(timeout=60)
    await communicator.wait(timeout=10)  # let the app finish the request (closes its database connection)
    return response["status"], json.loads(response["body"])


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_are_micro_batched_and_metered_each(version, settings):
    model, secret = version
    ModelVersion.all_tenants.filter(pk=model.pk).update(quantized=False)  # float: served micro-batched
    model.refresh_from_db()
    settings.ML_MICROBATCH_MAX = 64
    settings.ML_MICROBATCH_WAIT_MS = 200  # generous, so the test does not depend on the machine's speed
    alone = serving.predictor_for(version=model).predict(TEXTS)  # the unbatched answer, same loaded model

    async def together():
        return await asyncio.gather(*(_predict(model.pk, secret, text) for text in TEXTS))

    responses = asyncio.run(together())
    assert [status for status, _ in responses] == [200] * len(TEXTS), responses
    for (_, body), expected in zip(responses, alone, strict=True):
        (prediction,) = body["predictions"]
        assert prediction["label"] == expected.label
        assert prediction["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)
    batcher = serving.online_predictor_for(version=model)
    assert 1 <= batcher.batches_run < len(TEXTS)  # several requests per forward pass
    if deferred.enabled():  # with Redis the hot path's ledger lines reach the database in batches
        flusher.ledger_drain()
    events = UsageEvent.objects.for_org(model.organisation)
    assert events.filter(meter="predictions").count() == len(TEXTS)
    assert events.filter(meter="api_calls").count() == len(TEXTS)


@pytest.mark.django_db
def test_int8_versions_and_batching_off_serve_with_the_bare_predictor(version, settings):
    model, _ = version
    settings.ML_MICROBATCH_MAX = 64
    assert model.quantized  # the head model passed the int8 gate; int8 batches only texts of one length
    assert serving.online_predictor_for(version=model) is serving.predictor_for(version=model)
    ModelVersion.all_tenants.filter(pk=model.pk).update(quantized=False)
    model.refresh_from_db()
    assert serving.online_predictor_for(version=model) is not serving.predictor_for(version=model)
    settings.ML_MICROBATCH_MAX = 1
    assert serving.online_predictor_for(version=model) is serving.predictor_for(version=model)
