"""core.vectors over a product's rows (the knowledge base's passages): tenant scope, the ANN path, caching."""

import numpy as np
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core import generations, vectors
from core.ml.vector_index import unit_rows
from core.registry.models import ModelVersion, VersionStatus
from customer_service import services as cs
from customer_service.models import Article, ArticleChunk

MODEL = "test:model"


def _fill(organisation, matrix: np.ndarray) -> list[int]:
    article = Article.all_tenants.create(organisation=organisation, title="t", body="b")
    chunks = ArticleChunk.all_tenants.bulk_create(
        ArticleChunk(
            organisation=organisation,
            article=article,
            position=i,
            text=f"p{i}",
            vector=vectors.vector_bytes(row),
            embedder=MODEL,
        )
        for i, row in enumerate(matrix)
    )
    return [chunk.pk for chunk in chunks]


def _query(vector: np.ndarray) -> vectors.Embedded:
    return vectors.Embedded(vector[None, :].astype(np.float32), MODEL)


@pytest.mark.django_db
@pytest.mark.parametrize("ann_min", [10**6, 100], ids=["exact", "ann"])
def test_a_search_never_returns_another_tenants_rows(make_org, settings, ann_min):
    settings.VECTOR_ANN_MIN_VECTORS = ann_min
    (mine, _), (theirs, _) = make_org(), make_org()
    rng = np.random.default_rng(0)
    query = unit_rows(rng.standard_normal((1, 384)))[0]
    my_keys = set(_fill(mine, unit_rows(rng.standard_normal((300, 384)))))
    _fill(theirs, np.repeat(query[None, :], 300, axis=0))  # the other tenant's rows match perfectly
    hits, embedded = vectors.vector_search(source=cs.KB_VECTORS, organisation=mine, query=_query(query), k=20)
    assert embedded is not None and len(hits) == 20
    assert {hit.key for hit in hits} <= my_keys and max(hit.score for hit in hits) < 0.5
    index = vectors.vector_index(source=cs.KB_VECTORS, organisation=mine, model=MODEL)
    assert index.kind == ("ann" if ann_min == 100 else "exact") and len(index) == 300


@pytest.mark.django_db
def test_the_ann_index_is_built_once_and_rebuilt_when_its_rows_change(make_org, settings):
    settings.VECTOR_ANN_MIN_VECTORS = 100
    organisation, _ = make_org()
    rng = np.random.default_rng(1)
    _fill(organisation, unit_rows(rng.standard_normal((200, 384))))
    first = vectors.vector_index(source=cs.KB_VECTORS, organisation=organisation, model=MODEL)
    assert first.kind == "ann"
    assert vectors.vector_index(source=cs.KB_VECTORS, organisation=organisation, model=MODEL) is first
    target = unit_rows(rng.standard_normal((1, 384)))[0]
    (new_key,) = _fill(organisation, target[None, :])
    hits, _ = vectors.vector_search(
        source=cs.KB_VECTORS, organisation=organisation, query=_query(target), k=1
    )
    assert hits[0].key == new_key and hits[0].score == pytest.approx(1.0, abs=1e-4)
    again = vectors.vector_index(source=cs.KB_VECTORS, organisation=organisation, model=MODEL)
    assert again is not first and len(again) == 201


@pytest.mark.django_db
def test_texts_are_embedded_with_the_current_model_and_rows_of_another_are_stale(make_org):
    organisation, _ = make_org()
    embedded = vectors.texts_embed(
        organisation=organisation, app=cs.APP, task=cs.RETRIEVAL_TASK, texts=["hello", "opening hours"]
    )
    assert embedded.vectors.shape == (2, 384) and embedded.model.startswith("base:")
    assert np.allclose(np.linalg.norm(embedded.vectors, axis=1), 1.0, atol=1e-4)
    _fill(organisation, embedded.vectors)
    assert vectors.vectors_stale(source=cs.KB_VECTORS, organisation=organisation).count() == 2
    assert not vectors.vectors_stale(source=cs.KB_VECTORS, organisation=organisation, model=MODEL).exists()


@pytest.mark.django_db
def test_an_organisation_without_rows_embeds_nothing(make_org):
    organisation, _ = make_org()
    assert vectors.vector_search(source=cs.KB_VECTORS, organisation=organisation, query="anything", k=3) == (
        [],
        None,
    )


@pytest.mark.skipif(not generations.in_redis(), reason="needs REDIS_URL (CI sets it)")
@pytest.mark.django_db(transaction=True)  # the "registry" token is bumped when a version's write commits
def test_the_current_model_is_kept_per_process_until_a_model_version_changes(make_org):
    """Every search asks which model's vectors are current: a warm ask reads the organisation's "registry"
    token, not the active version; activating an embedding version is seen by the next ask."""
    organisation, _ = make_org()
    other, _ = make_org()
    base = vectors.current_model(organisation=organisation, app=cs.APP, task=cs.RETRIEVAL_TASK)
    assert base.startswith("base:")
    with CaptureQueriesContext(connection) as warm:
        assert vectors.current_model(organisation=organisation, app=cs.APP, task=cs.RETRIEVAL_TASK) == base
    assert len(warm) == 0
    version = ModelVersion.all_tenants.create(
        organisation=organisation,
        app=cs.APP,
        task=cs.RETRIEVAL_TASK,
        version=1,
        kind="embedding",
        status=VersionStatus.ACTIVE,
        method="contrastive",
    )
    assert vectors.current_model(organisation=organisation, app=cs.APP, task=cs.RETRIEVAL_TASK) == (
        f"version:{version.pk}"
    )
    # another app's task and another organisation are not this one's
    assert vectors.current_model(organisation=organisation, app="recommender", task="item_text") == base
    assert vectors.current_model(organisation=other, app=cs.APP, task=cs.RETRIEVAL_TASK) == base
    version.status = VersionStatus.ARCHIVED
    version.save(update_fields=["status"])
    assert vectors.current_model(organisation=organisation, app=cs.APP, task=cs.RETRIEVAL_TASK) == base
    with transaction.atomic():  # inside a transaction (its own writes not yet bumped): read every time
        version.status = VersionStatus.ACTIVE
        version.save(update_fields=["status"])
        assert vectors.current_model(organisation=organisation, app=cs.APP, task=cs.RETRIEVAL_TASK) == (
            f"version:{version.pk}"
        )
        transaction.set_rollback(True)
    assert vectors.current_model(organisation=organisation, app=cs.APP, task=cs.RETRIEVAL_TASK) == base
