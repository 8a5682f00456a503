"""core.generations: a per-process value kept while its organisation's tokens in Redis are unchanged, loaded
again after a bump commits, never served from inside a transaction, and never kept past a lost token."""

import pytest
from django.db import transaction

from core import generations
from core.billing.deferred import redis_client

pytestmark = pytest.mark.skipif(not generations.in_redis(), reason="needs REDIS_URL (CI sets it)")


class Loads:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        self.count += 1
        return self.count


@pytest.mark.django_db(transaction=True)  # bumps are sent when the writing transaction commits
def test_kept_until_a_bump_commits_then_loaded_again(make_org):
    org, _ = make_org()
    other, _ = make_org()
    cache: generations.GenerationCache[int] = generations.GenerationCache("a", "b")
    load = Loads()
    assert cache.get(org, load) == 1
    assert cache.get(org, load) == 1  # kept: no token changed
    with transaction.atomic():
        generations.bump(organisation=org, scope="b")
        assert cache.get(org, load) == 2  # inside a transaction: always loaded
        assert cache.get(org, Loads()) == 1
    assert cache.get(org, load) == 3  # the bump committed: loaded again, then kept
    assert cache.get(org, load) == 3
    generations.bump(organisation=other, scope="a")  # another organisation's token
    assert cache.get(org, load) == 3
    generations.bump(organisation=org, scope="unrelated")  # a scope this cache does not read
    assert cache.get(org, load) == 3


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_write_bumps_nothing(make_org):
    org, _ = make_org()
    cache: generations.GenerationCache[int] = generations.GenerationCache("a")
    load = Loads()
    cache.get(org, load)
    with pytest.raises(RuntimeError), transaction.atomic():
        generations.bump(organisation=org, scope="a")
        raise RuntimeError
    assert cache.get(org, load) == 1


@pytest.mark.django_db(transaction=True)
def test_a_token_lost_with_redis_is_a_change(make_org):
    org, _ = make_org()
    generations.bump(organisation=org, scope="a")
    cache: generations.GenerationCache[int] = generations.GenerationCache("a")
    load = Loads()
    cache.get(org, load)
    redis_client().delete(generations.token_key(org, "a"))  # evicted, or Redis flushed
    assert cache.get(org, load) == 2
    generations.bump(organisation=org, scope="a")
    assert cache.get(org, load) == 3


@pytest.mark.django_db(transaction=True)
def test_max_age_bounds_a_lost_bump(make_org):
    org, _ = make_org()
    ageing: generations.GenerationCache[int] = generations.GenerationCache("a", max_age_s=0.0)
    load = Loads()
    ageing.get(org, load)
    assert ageing.get(org, load) == 2
