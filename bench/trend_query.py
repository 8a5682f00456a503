"""Trend query over 1,000,000 documents on PostgreSQL: the finance monitor's buckets beside the naive
GROUP BY over the documents (the peer), same data, same run; both answers are checked to agree.

    DATABASE_URL=postgres://... .venv/bin/python manage.py migrate
    DATABASE_URL=postgres://... DJANGO_SETTINGS_MODULE=core.settings .venv/bin/python -m bench.trend_query

Documents are generated in SQL (6 topics, 180 days, a sentiment each); the buckets are built from them
with the same sums ``document_classified`` adds one document at a time (tests/finance_monitor/test_trends.py
checks that the incremental path equals a recount). Leaves its organisation behind for re-runs (--fresh).
"""

import statistics
import sys
import time
from datetime import timedelta

import django

django.setup()

from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from core.tenancy.models import Organisation  # noqa: E402
from core.tenancy.services import organisation_sign_up  # noqa: E402
from finance_monitor.models import Document  # noqa: E402
from finance_monitor.services.trends import trend_series  # noqa: E402

N = 1_000_000
NAME = "bench trend query"
DAYS = 180


def setup(fresh: bool) -> Organisation:
    existing = Organisation.objects.filter(name=NAME).first()
    if existing and fresh:
        existing.delete()
        existing = None
    if existing and Document.objects.for_org(existing).count() == N:
        return existing
    organisation = (
        existing
        or organisation_sign_up(
            organisation_name=NAME,
            email="bench-trends@example.com",
            password="bench-password-123",  # noqa: S106 - a local bench user
        )[0]
    )
    start = time.perf_counter()
    with connection.cursor() as c:
        c.execute("DELETE FROM finance_monitor_document WHERE organisation_id = %s", [organisation.pk])
        c.execute(
            """
            INSERT INTO finance_monitor_document (organisation_id, client_id, url, title, text, author,
                language, received_at, occurred_at, text_hash, topic, sentiment, score, classified_at,
                created_at, updated_at)
            SELECT %s, '', '', '', 'document ' || i, '', 'en', t, t, md5(i::text),
                (ARRAY['macro','earnings','rates','energy','banks','tech'])[1 + i %% 6],
                s, CASE s WHEN 'negative' THEN -0.6 WHEN 'positive' THEN 0.6 ELSE 0.0 END, t, now(), now()
            FROM (SELECT i, now() - (i * (%s::float / %s) * interval '1 day') AS t,
                         (ARRAY['negative','neutral','neutral','positive','positive'])[1 + (i * 7) %% 5] AS s
                  FROM generate_series(1, %s) AS i) g
            """,
            [organisation.pk, DAYS, N, N],
        )
        c.execute("DELETE FROM finance_monitor_trendbucket WHERE organisation_id = %s", [organisation.pk])
        for granularity in ("hour", "day"):
            c.execute(
                f"""
                INSERT INTO finance_monitor_trendbucket (organisation_id, dimension, key, granularity,
                    bucket_start,
                    volume, negative, neutral, positive, score_sum, created_at, updated_at)
                SELECT organisation_id, 'topic', topic, '{granularity}',
                    date_trunc('{granularity}', occurred_at),
                    count(*), count(*) FILTER (WHERE sentiment = 'negative'),
                    count(*) FILTER (WHERE sentiment = 'neutral'),
                    count(*) FILTER (WHERE sentiment = 'positive'),
                    sum(score), now(), now()
                FROM finance_monitor_document WHERE organisation_id = %s GROUP BY 1, 2, 3, 4, 5
                """,  # noqa: S608 (constants)
                [organisation.pk],
            )
        c.execute("ANALYZE finance_monitor_document")
        c.execute("ANALYZE finance_monitor_trendbucket")
    print(f"generated {N:,} documents and their buckets in {time.perf_counter() - start:.1f} s")
    return organisation


def naive(organisation, granularity, since, until):
    with connection.cursor() as c:
        c.execute(
            f"""
            SELECT date_trunc('{granularity}', occurred_at) AS b, count(*),
                   count(*) FILTER (WHERE sentiment = 'negative'), avg(score)
            FROM finance_monitor_document
            WHERE organisation_id = %s AND topic = %s AND occurred_at >= %s AND occurred_at < %s
            GROUP BY 1 ORDER BY 1
            """,  # noqa: S608 (constants)
            [organisation.pk, "rates", since, until],
        )
        return c.fetchall()


def timed(fn, repeat=7):
    fn()  # warm the cache: both sides measured hot
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs), result


def main() -> None:
    organisation = setup("--fresh" in sys.argv)
    now = timezone.now()
    for granularity, days in (("hour", 30), ("day", DAYS)):
        # whole buckets on both sides: the series lists buckets starting in [since, until)
        since = (now - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
        if granularity == "day":
            since = since.replace(hour=0)
        until = now + timedelta(hours=1)
        ours_ms, ours = timed(
            lambda g=granularity, s=since, u=until: trend_series(
                organisation=organisation, dimension="topic", key="rates", granularity=g, since=s, until=u
            )
        )
        peer_ms, peer = timed(lambda g=granularity, s=since, u=until: naive(organisation, g, s, u))
        agree = [(p["bucket_start"], p["volume"], p["negative"]) for p in ours] == [
            (b, v, n) for b, v, n, _ in peer
        ]
        print(
            f"topic 'rates', {granularity} buckets over {days} days ({len(ours)} points,"
            f" answers agree: {agree}): buckets {ours_ms:.1f} ms (median of 7)"
            f"  |  naive GROUP BY over documents (peer) {peer_ms:.1f} ms"
        )


if __name__ == "__main__":
    main()
