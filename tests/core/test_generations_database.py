"""core.generations without Redis (the embedded default): the tokens are rows written in the writer's own
transaction, so a value is kept until a change commits, loaded again after, and a rolled-back change bumps
nothing; the cached readers of the chat and the registry keep their values between requests."""

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from core import generations
from core.tenancy.models import GenerationToken
from tests.core.test_generations import Loads


@pytest.mark.django_db(transaction=True)
@override_settings(REDIS_URL="")
def test_tokens_in_the_database_keep_a_value_until_a_change_commits(make_org):
    org, _ = make_org()
    other, _ = make_org()
    assert not generations.in_redis()
    cache: generations.GenerationCache[int] = generations.GenerationCache("a", "b")
    load = Loads()
    assert cache.get(org, load) == 1
    with CaptureQueriesContext(connection) as queries:
        assert cache.get(org, load) == 1  # kept: one statement read the tokens
    assert len(queries) == 1 and "generationtoken" in queries[0]["sql"]
    with transaction.atomic():
        generations.bump(organisation=org, scope="b")
        assert cache.get(org, load) == 2  # inside a transaction: always loaded
    assert cache.get(org, load) == 3  # the bump committed with its transaction: loaded again, then kept
    assert cache.get(org, load) == 3
    with pytest.raises(RuntimeError), transaction.atomic():
        generations.bump(organisation=org, scope="a")
        raise RuntimeError
    assert cache.get(org, load) == 3  # rolled back: no new token
    generations.bump(organisation=other, scope="a")
    generations.bump(organisation=org, scope="unrelated")
    assert cache.get(org, load) == 3
    generations.bump(organisation=org, scope="a")
    assert cache.get(org, load) == 4
    assert GenerationToken.objects.filter(organisation_id=org.pk).count() == 3  # a row per scope bumped


@pytest.mark.django_db(transaction=True)
@override_settings(REDIS_URL="")
def test_the_chats_settings_come_from_the_cache_until_they_change(make_org):
    """Without Redis, the widget's bot settings are read once, then kept until a save bumps them."""
    from customer_service import services
    from customer_service.services.state import bot_settings_cached

    org, _ = make_org()
    services.bot_settings_update(organisation=org, greeting="Hello there")
    assert bot_settings_cached(organisation=org).greeting == "Hello there"
    with CaptureQueriesContext(connection) as queries:
        assert bot_settings_cached(organisation=org).greeting == "Hello there"
    assert len(queries) == 1  # the tokens only
    services.bot_settings_update(organisation=org, greeting="Welcome back")
    assert bot_settings_cached(organisation=org).greeting == "Welcome back"


@pytest.mark.django_db(transaction=True)
@override_settings(REDIS_URL="")
def test_an_organisation_deleted_with_its_rows_is_deleted(make_org):
    """Its rows' deletion bumps their scopes inside the deletion's transaction; no foreign key stops it."""
    from core.tenancy.models import Organisation
    from customer_service import services

    org, _ = make_org()
    services.bot_settings_update(organisation=org, greeting="Hello there")
    Organisation.objects.filter(pk=org.pk).delete()
    assert not Organisation.objects.filter(pk=org.pk).exists()


@pytest.mark.django_db(transaction=True)
@override_settings(REDIS_URL="")
def test_an_organisations_deletion_leaves_no_tokens(make_org):
    """The privacy deletion removes the organisation's rows, whose deletion bumps tokens: none are left."""
    from core.privacy.services import organisation_delete
    from customer_service import services

    org, owner = make_org()
    services.bot_settings_update(organisation=org, greeting="Hello there")
    assert GenerationToken.objects.filter(organisation_id=org.pk).exists()
    organisation_delete(organisation=org, actor=owner, confirm_name=org.name)
    assert not GenerationToken.objects.filter(organisation_id=org.pk).exists()


@pytest.mark.django_db(transaction=True)
@override_settings(REDIS_URL="")
@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite takes one lock for the whole database")
def test_two_transactions_bumping_two_scopes_in_opposite_orders_both_commit(make_org):
    """Each bump's row stays locked until its transaction ends: a transaction bumping "a" then "b" beside one
    bumping "b" then "a" deadlocked (PostgreSQL failed one of them); the organisation's token lock makes the
    second wait for the first instead."""
    import contextlib
    import threading

    from django.db import connections

    org, _ = make_org()
    for scope in ("a", "b"):
        generations.bump(organisation=org, scope=scope)  # the rows exist: each bump below locks one
    first_bumped, barrier = threading.Event(), threading.Barrier(2, timeout=3)
    errors: list[BaseException] = []

    def writer(scopes: tuple[str, str], wait_for_first: bool) -> None:
        try:
            if wait_for_first:
                first_bumped.wait(timeout=10)
            with transaction.atomic():
                generations.bump(organisation=org, scope=scopes[0])
                first_bumped.set()
                # both holding their first row, where nothing made one wait; else the other waits for this one
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()
                generations.bump(organisation=org, scope=scopes[1])
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=writer, args=(("a", "b"), False)),
        threading.Thread(target=writer, args=(("b", "a"), True)),
    ]
    tokens_before = dict(GenerationToken.objects.filter(organisation_id=org.pk).values_list("scope", "token"))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    tokens_after = dict(GenerationToken.objects.filter(organisation_id=org.pk).values_list("scope", "token"))
    assert tokens_after.keys() == {"a", "b"} and all(tokens_after[s] != tokens_before[s] for s in "ab")
