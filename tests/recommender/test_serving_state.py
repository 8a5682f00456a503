"""What a recommendation reads besides the user's history (settings, catalogue version, active version,
running experiment) is cached per process behind ``core.generations``: a warm request reads only the history,
and every kind of change is served by the next request after it commits."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core import generations
from core.registry.models import ModelVersion
from core.registry.services import promotion
from recommender.services import catalogue, diversity, events, experiments, serving
from tests.recommender.conftest import train_now
from tests.redis_commands import redis_commands

pytestmark = [
    pytest.mark.skipif(not generations.in_redis(), reason="the tokens live in Redis (REDIS_URL)"),
    # writers' bumps are sent when their transaction commits; the cache is bypassed inside one
    pytest.mark.django_db(transaction=True),
]

CACHED = ("recommender_recommendersettings", "registry_modelversion", "recommender_experiment")


def _serve(org, k=5, user="u0"):
    return serving.recommendations_for_user(organisation=org, user=user, k=k, filters=serving.Filters())


def _ids(answer):
    return [item["id"] for item in answer["items"]]


def test_a_warm_request_reads_only_the_users_history(shop):
    org, _ = shop
    train_now(org)
    _serve(org)
    with CaptureQueriesContext(connection) as queries:
        answer = _serve(org)
    assert answer["model_version"] is not None and answer["items"]
    statements = [q["sql"] for q in queries.captured_queries]
    assert not [s for s in statements if any(table in s for table in CACHED)], statements
    assert len(statements) == 1 and "recommender_event" in statements[0], statements


def test_every_change_is_served_by_the_next_request(shop):
    org, _ = shop
    assert _serve(org)["model_version"] is None  # live popularity, now cached
    # a trained version, promoted: the registry's scope
    first = train_now(org, "itemknn")
    v1 = ModelVersion.objects.for_org(org).get(status="active")
    assert first.pk and _serve(org)["model_version"] == v1.pk
    # the organisation's default limit per category
    assert sorted(_ids(_serve(org))) == ["C", "D", "F"]
    diversity.diversity_set(organisation=org, max_per_category=1)
    assert sorted(_ids(_serve(org))) in (["C", "F"], ["D", "F"])
    diversity.diversity_set(organisation=org, max_per_category=None)
    assert sorted(_ids(_serve(org))) == ["C", "D", "F"]
    # the catalogue (its version is in the cached settings): a deleted item is never served
    catalogue.items_upsert(organisation=org, rows=[{"id": "C", "title": "White plate", "deleted": True}])
    assert "C" not in _ids(_serve(org))
    # the event weights: purchases weigh nothing, so u0 has no history
    assert _serve(org)["history_items"] == 3
    events.event_weights_set(organisation=org, weights={"purchase": 0})
    assert _serve(org)["history_items"] == 0
    events.event_weights_set(organisation=org, weights={"purchase": 1})
    # an experiment started and stopped
    train_now(org, "popularity")
    v2 = ModelVersion.objects.for_org(org).exclude(pk=v1.pk).get()
    experiment = experiments.experiment_create(
        organisation=org, name="knn vs pop", version_a=v1.pk, version_b=v2.pk, share_b=0.5
    )
    experiments.experiment_start(organisation=org, experiment_id=experiment.pk)
    served = _serve(org)
    assert served["experiment"]["id"] == experiment.pk
    assert served["model_version"] == (v1.pk if served["experiment"]["arm"] == "A" else v2.pk)
    experiments.experiment_stop(organisation=org, experiment_id=experiment.pk)
    assert _serve(org)["experiment"] is None
    # promotion and rollback by hand
    active = ModelVersion.objects.for_org(org).get(status="active")
    other = v2 if active.pk == v1.pk else v1
    promotion.model_promote(organisation=org, version_id=other.pk, force=True)
    assert _serve(org)["model_version"] == other.pk
    promotion.model_rollback(organisation=org, app="recommender", task="ranking")
    assert _serve(org)["model_version"] == active.pk


def test_a_warm_request_makes_one_redis_call_for_its_meter_and_tokens_and_is_charged_once(shop, monkeypatch):
    """The served meter is charged up front with the serving state's tokens read in the same Redis call, so
    a warm request makes two round trips (that call and the history's statement); its one ledger line is
    written once, and a request whose work fails is corrected back to nothing."""
    from core.billing import flusher
    from core.billing import services as billing
    from core.billing.models import UsageEvent

    org, _ = shop
    train_now(org)
    _serve(org)
    flusher.ledger_drain()
    before = billing.period_used(organisation=org, meter=serving.SERVED_METER)
    with redis_commands() as commands, CaptureQueriesContext(connection) as queries:
        answer = _serve(org)
    assert answer["items"] and commands == ["EVALSHA"], commands
    assert len(queries.captured_queries) == 1
    monkeypatch.setattr(serving, "_why", lambda **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        _serve(org)
    monkeypatch.undo()
    flusher.ledger_drain()
    assert billing.period_used(organisation=org, meter=serving.SERVED_METER) == before + 1
    lines = UsageEvent.objects.for_org(org).filter(meter=serving.SERVED_METER).order_by("-pk")[:3]
    assert [float(line.quantity) for line in lines] == [-1, 1, 1]
