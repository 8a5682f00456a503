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


@pytest.mark.django_db
def test_where_int8_is_not_faster_than_float_a_gated_version_serves_its_float_model(
    version, settings, monkeypatch
):
    """``ML_INT8_KERNEL=auto``: a version that passed its int8 gate serves int8 only where torch's int8 kernel
    beats float32 on the machine (timed once per process: ``core.ml.quantize.matmul_kernel``). The timing's
    verdict is set here for both kinds of processor (a test cannot change the one it runs on)."""
    import os

    from core.ml import quantize

    model, _ = version
    assert model.quantized  # passed its gate
    settings.ML_MICROBATCH_MAX = 64
    settings.ML_INT8_KERNEL = "auto"

    def machine(kernel: str) -> None:  # the verdict for every thread count the process may run with
        for threads in range(1, (os.cpu_count() or 1) + 3):
            monkeypatch.setitem(quantize._kernel_choice, threads, kernel)

    machine("float")  # no fast int8 here: the float model answers, and batches concurrent requests
    assert serving.serving_path(version=model) == "float"
    loaded = serving.predictor_for(version=model)
    assert not loaded.quantized
    assert serving.online_predictor_for(version=model) is not loaded  # the micro-batcher
    answers = serving.version_run(version=model, texts=TEXTS)
    assert [a.probabilities for a in answers] == [p.probabilities for p in loaded.predict(TEXTS)]

    machine("int")  # VNNI or AMX: int8 on torch's kernel
    assert serving.serving_path(version=model) == "int8"
    int8 = serving.predictor_for(version=model)
    assert int8.quantized and int8 is not loaded
    assert {layer.kernel for layer in int8.model.modules() if isinstance(layer, quantize.RowInt8Linear)} == {
        "int"
    }

    machine("float")
    settings.ML_INT8_KERNEL = "float"  # int8 asked for outright: served on the float32 kernel, same answers
    assert serving.serving_path(version=model) == "int8"
    emulated = serving.predictor_for(version=model)
    assert emulated is int8  # one int8 model per version and process: loaded before with the int kernel
