"""Recommender serving: p50/p99 of a top-10 request in process and over HTTP, beside bare peers (same run).

In process, each request goes through the product's own serving function
(``recommender.services.serving.recommendations_for_user``, or ``recommendations_for_session`` for the text
row): the active version from the registry, the user's history read from PostgreSQL, filters (a price range,
two excluded items, at most 3 items per category; ``--category`` rows: one category instead of the limit,
synthetic catalogues only, the slice has none), purchases left out, ``why`` and ``why_words`` per item, and
the ``recommendations_served`` meter charged in the database. Rows:

- ``ease``, ``popularity``, ``hybrid``: the organisation's active version of that method serves a known user;
- ``text``: an anonymous session of two items nobody has bought, under the EASE version: every model answers
  such a session by text alone, through the catalogue's vector index (exact below ``VECTOR_ANN_MIN_VECTORS``,
  faiss IVF above);
- peers measured in the same run on the same vectors and model: ``peer: bare vector top-10`` (one
  ``core.ml.vector_index.VectorIndex.search``, no database), ``peer: bare EASE scores + top-10``
  (``model.scores`` and an argpartition, no database, no filters), and ``peer: one SQL round trip``
  (``SELECT 1`` on the same connection: what each of the request's statements costs at least).

Catalogues: ``demo`` is the shipped Online Retail slice (UCI, CC BY 4.0) loaded through the ordinary
services, with 100 "new edition" copies of its items that nobody has bought (the text row's sessions), and
embedded by the shared encoder; ``100000`` and ``1000000`` are synthetic: items in 200 topics
(titles of the topic's words, 50 categories, prices, 5% unavailable), unit vectors of 384 dimensions near
their topic's centre (written straight into the rows, as the embedding job would), and users who buy within
one or two topics from a head of popular items (Zipf): ``users`` = n / 10 (at most 20,000), about 15
purchases each, the models trained on those events by the ordinary training job (EASE lambda 300, the hybrid
with one EASE setting). Warm-up requests (model load, index build) are not counted.

Over HTTP (``--http``): ``GET /api/recommender/recommendations?user=...&k=10&max_price=...&exclude=...``
with an API key (authentication, the rate limit, filters, the meter) against ``core.asgi:application`` under
uvicorn (``--http-workers`` processes, 2 by default: one per core, as the README starts it) on the same
database and Redis, with 1 and 8 keep-alive clients, beside the peer ``bench/bare_recommend.py`` (as many
processes): the same active version's scores and top-10 behind a bare ASGI endpoint (no Django, no key, no
database, no metering).

At 1,000,000 items the hybrid's training job would score every held-out user against the whole catalogue
(hours on 2 cores), so from 100k on the bench evaluates its models on a sample of 300 held-out users and the
hybrid validates on 10 users: serving, not quality, is what it measures.

Run it on a Redis database no test worker consumes (``--redis-url``): the demo's upserts queue embedding tasks
that nobody takes here, and their "queued" markers would hold back a test organisation with the same id.

    .venv/bin/python bench/recommender_serving.py --sizes demo 100000 1000000 --requests 300 --http
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import add_launchers_argument, machine_note  # noqa: E402

DIM, TOPICS, CATEGORIES, K = 384, 200, 50, 10
WORDS = [
    "red", "blue", "green", "vintage", "retro", "glass", "metal", "wooden", "paper", "ceramic", "heart",
    "star", "floral", "spot", "stripe", "mini", "large", "small", "gift", "party", "garden", "kitchen",
    "travel", "christmas", "easter", "summer", "winter", "candle", "lantern", "mug", "plate", "bowl", "bag",
    "box", "tin", "card", "wrap", "frame", "clock", "lamp", "cushion", "doormat", "bottle", "jar", "tray",
    "napkin", "ribbon", "bell", "hook", "sign",
]  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/trellis_bench_recserve")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/14"))
    parser.add_argument("--sizes", nargs="+", default=["demo", "100000", "1000000"])
    parser.add_argument("--methods", nargs="+", default=["ease", "popularity", "hybrid", "text"])
    parser.add_argument("--requests", type=int, default=300, help="timed requests per row")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--category", action="store_true", help="also rows with a category filter")
    parser.add_argument("--http", action="store_true", help="also over HTTP (demo and 100k sizes)")
    parser.add_argument("--http-requests", type=int, default=400, help="per concurrency level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--http-workers", type=int, default=2, help="uvicorn processes per server")
    add_launchers_argument(parser, "a Trellis server")
    parser.add_argument(
        "--http-client",
        choices=["process", "bench"],
        default="process",
        help="where the HTTP clients' threads run: a fresh Python process that holds nothing else (the "
        "default; a visitor's client is not on the server's heap) or this bench process, which also holds "
        "the catalogue and the models of the in-process rows (its collector's passes and GIL fall on the "
        "clients' timings)",
    )
    parser.add_argument("--profile", default="", help="write a cProfile of one row's requests here")
    parser.add_argument(
        "--metering-peer",
        action="store_true",
        help="also each method's requests alternating with the same requests metered as before the up-front "
        "charge (the tokens' own read, reserve and settle: four round trips instead of two)",
    )
    parser.add_argument(
        "--hybrid-config",
        type=json.loads,
        default={},
        help="more of the hybrid's training config, as JSON (e.g. '{\"cold_slots\": 0}')",
    )
    parser.add_argument(
        "--ledger-flusher",
        choices=["process", "thread"],
        default="process",
        help="who writes the served meter's ledger lines: a `flush_ledger --follow` process beside the bench "
        "and the servers (what bin/run-all runs with Redis; the default) or a thread in each serving process",
    )
    return parser.parse_args()


def percentiles(latencies: list[float]) -> tuple[float, float]:
    ordered = sorted(latencies)
    n = len(ordered)
    return 1000 * statistics.median(ordered), 1000 * ordered[min(n - 1, int(0.99 * n))]


# --- the organisations ------------------------------------------------------------------------------------


def make_org(name: str):
    from core.billing import services as billing
    from core.billing.models import Plan
    from core.tenancy import services as tenancy

    Plan.objects.filter(code="enterprise").update(requests_per_minute=1_000_000)
    org, _ = tenancy.organisation_sign_up(
        organisation_name=name,
        email=f"{name.lower().replace(' ', '-')}@example.com",
        password="bench-password-123",  # noqa: S106 - a throwaway bench database
    )
    billing.subscription_change_plan(organisation=org, plan_code="enterprise")
    return org


def demo_org():
    """The Online Retail slice through the ordinary services, embedded by the shared encoder."""
    from recommender.demo import BATCH, retail_catalogue_and_events
    from recommender.services import catalogue, events, text

    org = make_org("Bench demo")
    items, purchases = retail_catalogue_and_events()
    for start in range(0, len(items), BATCH):
        catalogue.items_upsert(organisation=org, rows=items[start : start + BATCH])
    for start in range(0, len(purchases), BATCH):
        events.events_ingest(organisation=org, rows=purchases[start : start + BATCH])
    # 100 items nobody has bought yet (every item of the slice was): what the text row's sessions look at
    new = [
        {"id": f"new-{i['id']}", "title": f"{i['title']} new edition", "price": i["price"]}
        for i in items[:100]
    ]
    catalogue.items_upsert(organisation=org, rows=new)
    text.items_embed_pending(organisation=org)
    return org


def synthetic_vectors(n: int, rng: np.random.Generator, topics: np.ndarray) -> np.ndarray:
    from core.ml.vector_index import unit_rows

    centres = unit_rows(rng.standard_normal((TOPICS, DIM), dtype=np.float32))
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        noise = rng.standard_normal((m, DIM), dtype=np.float32) * 0.06
        out[start : start + m] = unit_rows(centres[topics[start : start + m]] + noise)
    return out


def synthetic_org(n: int):
    """``n`` items and their behaviour, written with COPY (the services' row-by-row checks would take an
    hour at 1M; what serving reads is the same rows)."""
    from django.db import connection
    from django.utils import timezone

    from core.vectors import current_model
    from recommender.models import Item
    from recommender.services import text

    org = make_org(f"Bench {n}")
    rng = np.random.default_rng(n)
    model = current_model(organisation=org, app=text.APP, task=text.TEXT_TASK)
    topics = rng.integers(0, TOPICS, n)
    vectors = synthetic_vectors(n, rng, topics)
    words = np.array(WORDS)
    topic_words = [words[rng.choice(len(WORDS), 4, replace=False)] for _ in range(TOPICS)]
    prices = np.round(rng.lognormal(1.5, 0.8, n), 2)
    now = timezone.now()
    started = time.perf_counter()
    with (
        connection.cursor() as cursor,
        cursor.copy(
            "COPY recommender_item (organisation_id, external_id, title, description, categories, price,"
            " available, expires_at, attributes, deleted, vector, embedder, created_at, updated_at)"
            " FROM STDIN"
        ) as copy,
    ):
        for i in range(n):
            tw = topic_words[topics[i]]
            title = f"{tw[i % 4]} {tw[(i // 4) % 4]} {WORDS[i % len(WORDS)]} {i}"
            category = f"cat{(topics[i] * 7 + i % 3) % CATEGORIES}"
            copy.write_row(
                (org.pk, f"i{i}", title, "", json.dumps([category]), float(prices[i]), bool(i % 20),
                 None, "{}", False, vectors[i].tobytes(), model, now, now)
            )  # fmt: skip
    print(f"  {n} items written in {time.perf_counter() - started:.0f} s", flush=True)
    head = min(5000, n // 20)
    by_topic: dict[int, np.ndarray] = {t: np.flatnonzero(topics[:head] == t) for t in range(TOPICS)}
    pks = dict(
        Item.objects.for_org(org)
        .filter(external_id__in=[f"i{i}" for i in range(head)])
        .values_list("external_id", "pk")
    )
    users = min(20_000, n // 10)
    rows = 0
    with (
        connection.cursor() as cursor,
        cursor.copy(
            'COPY recommender_event (organisation_id, external_id, "user", item_id, type, value, occurred_at,'
            " created_at, updated_at) FROM STDIN"
        ) as copy,
    ):
        for u in range(users):
            liked = rng.choice(TOPICS, 1 + (u % 2), replace=False)
            pool = np.concatenate([by_topic[int(t)] for t in liked])
            if not len(pool):
                continue
            count = int(rng.geometric(1 / 15))
            weights = 1.0 / np.arange(1, len(pool) + 1) ** 1.1
            picks = rng.choice(pool, count, p=weights / weights.sum())
            for e, item in enumerate(picks):
                when = now - timezone.timedelta(days=float(rng.uniform(0, 300)))
                copy.write_row(
                    (org.pk, f"e{u}-{e}", f"u{u}", pks[f"i{item}"], "purchase", 1.0, when, now, now)
                )
                rows += 1
    print(f"  {rows} events of {users} users written", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE recommender_item; ANALYZE recommender_event")
    return org


def train(org, methods: list[str], large: bool, hybrid_extra: dict | None = None) -> dict[str, int]:
    """Each method as the ordinary training job, in this process: {method: version id}. ``large``: evaluate
    on 300 held-out users and validate the hybrid on 10 (see the module's docstring)."""
    from core.jobs import services as jobs
    from core.jobs.models import TrainingJob
    from recommender import ranking
    from recommender.services import training

    hybrid_extra = hybrid_extra or {}
    configs = {
        "ease": {"method": "ease"},
        "popularity": {"method": "popularity"},
        "hybrid": {
            "method": "hybrid",
            "ease_lambdas": [300],
            "decay_days": [90],
            "validation_users": 10 if large else 500,
            **hybrid_extra,
        },
    }
    if large:
        full = ranking.evaluate

        def sampled(*, model, held_out, k: int = 10):
            return full(model=model, held_out=held_out[:300], k=k)

        ranking.evaluate = sampled  # type: ignore[assignment]
    out = {}
    for method in [m for m in methods if m in configs]:
        started = time.perf_counter()
        job = training.recommender_train_start(organisation=org, config=configs[method])
        jobs.job_execute(job_id=job.pk)
        job = TrainingJob.objects.for_org(org).get(pk=job.pk)
        if job.status != "succeeded":
            raise SystemExit(f"{method} did not train: {job.error}")
        out[method] = job.result["model_version"]
        print(f"  trained {method} in {time.perf_counter() - started:.0f} s: {job.result}", flush=True)
    return out


def activate(org, version_id: int) -> None:
    from core.registry.models import ModelVersion
    from core.registry.services import promotion

    if ModelVersion.objects.for_org(org).get(pk=version_id).status != "active":
        promotion.model_promote(organisation=org, version_id=version_id, force=True)


# --- in process ---------------------------------------------------------------------------------------------


def subjects(org, rng: np.random.Generator, count: int) -> tuple[list[str], list[str], float]:
    """Users with a history, items nobody has bought (the text row's sessions), and the price filter's top."""
    from recommender.models import Event, Item

    users = list(Event.objects.for_org(org).values_list("user", flat=True).distinct()[:5000])
    bought = set(Event.objects.for_org(org).values_list("item_id", flat=True).distinct())
    cold = []
    for pk, key in (
        Item.objects.for_org(org).filter(vector__isnull=False).values_list("pk", "external_id")[:50_000]
    ):
        if pk not in bought:
            cold.append(key)
        if len(cold) >= 2000:
            break
    prices = [
        float(p)
        for p in Item.objects.for_org(org).exclude(price=None).values_list("price", flat=True)[:20000]
    ]
    top = float(np.percentile(prices, 80)) if prices else 1e9
    return [users[i] for i in rng.integers(0, len(users), count)], cold, top


def timed_requests(call, count: int, warmup: int) -> list[float]:
    for i in range(warmup):
        call(i)
    out = []
    for i in range(count):
        start = time.perf_counter()
        call(warmup + i)
        out.append(time.perf_counter() - start)
    return out


def compute_only(org, method: str, users: list[str], cold: list[str], top_price: float, args) -> tuple:
    """The same requests' share that is not the database: the active model's ranking, the text neighbours,
    the filters, ``why`` and the answer on the cached catalogue (``serving``'s own steps, histories read
    beforehand; no meter, no version or experiment lookup; the text path still asks which model embeds)."""
    from decimal import Decimal

    from core.registry.services.common import active_version
    from core.registry.services.serving import loaded_model
    from recommender.selectors import user_history
    from recommender.services import serving, snapshot

    version = active_version(org, "recommender", "ranking")
    model = loaded_model(version=version)
    snap = snapshot.catalogue_snapshot(organisation=org, version=snapshot.catalogue_version(org))
    total = args.warmup + args.requests
    if method == "text":
        subjects = [
            ({cold[(2 * i) % len(cold)]: 1.0, cold[(2 * i + 1) % len(cold)]: 1.0}, set())
            for i in range(total)
        ]
        subjects = [(h, set(h)) for h, _ in subjects]
    else:
        subjects = [user_history(organisation=org, user=u) for u in users[:total]]
    filters = serving.Filters(min_price=Decimal("0.5"), max_price=Decimal(str(round(top_price, 2))))

    def call(i: int) -> None:
        history, skip = subjects[i]
        ranked, picked, _ = serving._ranked_and_picked(
            organisation=org,
            snap=snap,
            model=model,
            history=history,
            skip=skip,
            k=K,
            filters=filters,
            limit=3,
            catalogue_version=snap.version,
        )
        why = serving._why(model=model, ranked=ranked, snap=snap, picked=picked, history=history)
        serving._answer(organisation=org, snap=snap, version=version, model=model, picked=picked, why=why)

    latencies = timed_requests(call, args.requests, args.warmup)
    return (args.size_label, f"{method}: its work without the database", *percentiles(latencies), "component")


def metering_side_by_side(serving, call, args, size: str, name: str) -> list[tuple]:
    """The same requests, alternating one by one: metered as serving meters them (the served meter charged
    up front by the reserving Redis call, which reads the serving state's generation tokens too: that call
    and the history's statement) and as before (the tokens' own read, a reservation, a settlement after the
    work: four round trips). Each request made both ways in turn, which goes first alternating, so that the
    machine's slower and faster moments fall on both."""
    real = serving.metered_streamed

    def four_round_trips(run, **kwargs):
        return real(run, **{**kwargs, "upfront": False, "prefetch": ()})

    out: dict[bool, list[float]] = {True: [], False: []}
    for i in range(args.warmup + args.requests):  # each request twice, the first of the two taking turns
        for upfront in (True, False) if i % 2 else (False, True):
            serving.metered_streamed = real if upfront else four_round_trips
            try:
                start = time.perf_counter()
                call(i)
                if i >= args.warmup:
                    out[upfront].append(time.perf_counter() - start)
            finally:
                serving.metered_streamed = real
    rows = [
        (size, f"{name}, alternating: metered up front (2 round trips)", *percentiles(out[True]), ""),
        (size, f"peer: {name}, alternating: reserve, settle, token read (4)", *percentiles(out[False]), ""),
    ]
    for row in rows:
        print(row, flush=True)
    return rows


@contextlib.contextmanager
def _text_searches(text):
    """Count the catalogue text searches that serving makes inside the block (``[count]``)."""
    search, count = text.text_neighbours, [0]

    def counted(**kwargs):
        count[0] += 1
        return search(**kwargs)

    text.text_neighbours = counted
    try:
        yield count
    finally:
        text.text_neighbours = search


def in_process(org, versions: dict[str, int], args, size: str) -> list[tuple]:
    from decimal import Decimal

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from core.registry.models import ModelVersion
    from core.registry.services.serving import loaded_model
    from recommender.services import serving, snapshot, text
    from recommender.services.snapshot import catalogue_version

    rng = np.random.default_rng(1)
    total = args.warmup + args.requests
    args.size_label = size
    users, cold, top_price = subjects(org, rng, total)
    rows = []
    category_rows = [False, True] if args.category else [False]
    for method in args.methods:
        version_id = versions.get("ease" if method == "text" else method)
        if version_id is None:
            continue
        activate(org, version_id)
        for with_category in category_rows if method != "text" and size != "demo" else [False]:

            def call(i: int, method=method, with_category=with_category) -> dict:
                excluded = frozenset({f"i{int(rng.integers(0, 5000))}", f"i{int(rng.integers(0, 5000))}"})
                filters = serving.Filters(
                    min_price=Decimal("0.5"),
                    max_price=Decimal(str(round(top_price, 2))),
                    exclude=excluded,
                    max_per_category=0 if with_category else 3,  # a category: no limit per category
                    category=f"cat{i % CATEGORIES}" if with_category else None,
                )
                if method == "text":
                    a, b = cold[(2 * i) % len(cold)], cold[(2 * i + 1) % len(cold)]
                    return serving.recommendations_for_session(
                        organisation=org, items=[a, b], k=K, filters=filters
                    )
                return serving.recommendations_for_user(organisation=org, user=users[i], k=K, filters=filters)

            profiler = None
            if args.profile and method == args.methods[0] and size == args.sizes[-1] and not with_category:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            with _text_searches(text) as searched:
                latencies = timed_requests(call, args.requests, args.warmup)
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(args.profile)
            with CaptureQueriesContext(connection) as queries:
                answer = call(0)
            served = len(answer["items"])
            explained = sum(bool(item["why"]) for item in answer["items"])
            name = method + (" + category" if with_category else "")
            note = f"{served} items, {explained} with why; {len(queries)} SQL statements"
            note += f"; text searched in {searched[0]} of {total} requests"
            served_model = loaded_model(version=ModelVersion.all_tenants.get(pk=version_id))
            if method == "hybrid":
                weights = {key: round(value, 3) for key, value in served_model.weights.items()}
                note += f"; weights {weights}, cold_slots {served_model.config.cold_slots}"
            rows.append((size, name, *percentiles(latencies), note))
            print(rows[-1], flush=True)
            if method == "hybrid" and not served_model.text_neighbours_matter():
                # peer: the same requests with the text neighbours searched every time (the code before)
                served_model.text_neighbours_matter = lambda: True  # type: ignore[method-assign]
                try:
                    latencies = timed_requests(call, args.requests, args.warmup)
                finally:
                    del served_model.text_neighbours_matter
                peer = f"peer: {name}, text neighbours always searched"
                rows.append((size, peer, *percentiles(latencies), ""))
                print(rows[-1], flush=True)
            if args.metering_peer and not with_category and method != "text":
                rows += metering_side_by_side(serving, call, args, size, name)
            if not with_category:
                rows.append(compute_only(org, method, users, cold, top_price, args))
                print(rows[-1], flush=True)
    # peers: the bare vector top-10 and the bare EASE scores, same data, no database
    model_ref = text.vectors.current_model(organisation=org, app=text.APP, task=text.TEXT_TASK)
    _rows, index = snapshot.catalogue_snapshot(organisation=org, version=catalogue_version(org)).index(
        model_ref
    )
    queries = np.asarray(rng.standard_normal((total, index.dim)), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    latencies = timed_requests(lambda i: index.search(queries[i], K), args.requests, args.warmup)
    rows.append(
        (size, f"peer: bare vector top-10 ({index.kind}, {len(index)} vectors)", *percentiles(latencies), "")
    )
    if "ease" in versions:
        model = loaded_model(version=ModelVersion.all_tenants.get(pk=versions["ease"]))
        histories = [
            {item: 1.0 for item in model.items[j : j + 5]}
            for j in rng.integers(0, len(model.items) - 5, total)
        ]

        def bare(i: int) -> None:
            scores = model.scores(histories[i])
            top = np.argpartition(-scores, K)[:K]
            top[np.argsort(-scores[top])]

        latencies = timed_requests(bare, args.requests, args.warmup)
        rows.append(
            (size, f"peer: bare EASE scores + top-10 ({len(model.items)} items)", *percentiles(latencies), "")
        )

    def select_one(_i: int) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    latencies = timed_requests(select_one, args.requests, args.warmup)
    rows.append(
        (size, "peer: one SQL round trip (SELECT 1)", *percentiles(latencies), "the database's floor")
    )
    for row in rows[-3:]:
        print(row, flush=True)
    return rows


# --- over HTTP ---------------------------------------------------------------------------------------------


class Client:
    def __init__(self, port: int, secret: str) -> None:
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Authorization": f"Bearer {secret}"}

    def get(self, path: str) -> tuple[int, dict]:
        import http.client

        try:
            self.conn.request("GET", path, headers=self.headers)
            response = self.conn.getresponse()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            self.conn.close()  # the server closed an idle keep-alive connection: once more on a new one
            self.conn.request("GET", path, headers=self.headers)
            response = self.conn.getresponse()
        body = response.read()
        return response.status, json.loads(body) if response.status == 200 else {"error": body[:200]}


def http_load(port: int, secret: str, paths: list[str], concurrency: int, total: int) -> dict:
    per_client = total // concurrency
    clients = [Client(port, secret) for _ in range(concurrency)]
    for client in clients:  # connections set up, model and index loaded
        for path in paths[:5]:
            client.get(path)
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(concurrency + 1)

    def run(index: int, client: Client) -> None:
        barrier.wait()
        for i in range(per_client):
            start = time.perf_counter()
            status, _ = client.get(paths[(index * per_client + i) % len(paths)])
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                errors[0] += status != 200
                if status != 200 and errors[0] < 3:
                    print("  error", status, _, flush=True)

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    return {
        "per_s": len(latencies) / wall,
        "p50": p50,
        "p99": p99,
        "errors": errors[0],
        "requests": len(latencies),
    }


def http_load_in_process(port: int, secret: str, paths: list[str], concurrency: int, total: int) -> dict:
    """``http_load`` in a fresh Python process (numpy and the standard library only): the clients' threads
    share a GIL and a heap with nothing but each other, as clients on other machines would."""
    code = (
        "import json, sys; from bench.recommender_serving import http_load; "
        "print(json.dumps(http_load(*json.load(sys.stdin))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps([port, secret, paths, concurrency, total]),
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def server_cpu_seconds(proc) -> float:
    """CPU seconds (user + system) a server's processes have used so far: its launcher and every child."""
    import psutil

    total = 0.0
    root = psutil.Process(proc.pid)
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def over_http(org, versions: dict[str, int], args, env: dict[str, str], size: str) -> list[tuple]:
    from bench.http_serving import free_port
    from core.billing.models import UsageEvent
    from core.tenancy import services as tenancy

    method = "hybrid" if "hybrid" in versions else "ease"
    activate(org, versions[method])
    _, secret = tenancy.api_key_create(organisation=org, created_by=None, name="bench", scopes=["predict"])
    rng = np.random.default_rng(2)
    users, _cold, top_price = subjects(org, rng, 2000)
    paths = [
        f"/api/recommender/recommendations?user={u}&k={K}&min_price=0.5&max_price={top_price:.2f}"
        f"&exclude=i{int(rng.integers(0, 5000))},i{int(rng.integers(0, 5000))}&max_per_category=3"
        for u in users
    ]
    before = UsageEvent.all_tenants.filter(organisation=org, meter="recommendations_served").count()
    servers = [
        (
            "peer: bare ASGI top-10 (bench/bare_recommend.py)",
            "bench.bare_recommend:application",
            args.launchers[0],
        )
    ]
    for launcher in args.launchers:
        suffix = f", {launcher}" if len(args.launchers) > 1 else ""
        name = f"Trellis GET /api/recommender/recommendations ({method}{suffix})"
        servers.append((name, "core.asgi:application", launcher))
    rows, answered = [], 0
    started = []
    try:
        for name, app, launcher in servers:
            port = free_port()
            bare_env = {**env, "BARE_ORGANISATION_ID": str(org.pk)}
            proc = serve(app, port, bare_env, args.http_workers, launcher)
            started.append((name, port, proc))
        for concurrency in args.concurrency:
            for name, port, _proc in started:
                cpu = server_cpu_seconds(_proc)
                load = http_load_in_process if args.http_client == "process" else http_load
                stats = load(port, secret, paths, concurrency, args.http_requests)
                stats["cpu_ms"] = 1000 * (server_cpu_seconds(_proc) - cpu) / stats["requests"]
                if app_is_trellis(name):
                    answered += (
                        (args.http_requests // concurrency) * concurrency + 5 * concurrency - stats["errors"]
                    )
                rows.append((size, name, concurrency, stats))
                print(rows[-1], flush=True)
    finally:
        for _name, _port, proc in started:
            proc.terminate()
            proc.wait(timeout=30)
    from core.billing.flusher import ledger_drain

    ledger_drain()  # what the flusher (a process or the servers' threads) had not written yet
    after = UsageEvent.all_tenants.filter(organisation=org, meter="recommendations_served").count()
    print(
        f"  meter: {after - before} recommendations_served lines for {answered} answered requests", flush=True
    )
    return rows


def serve(app: str, port: int, env: dict[str, str], workers: int, launcher: str = "core.serve"):
    """``workers`` uvicorn processes, once it answers (the model and catalogue load on first use): dealt
    connections by ``core.serve`` (as ``bin/run-all`` serves) or sharing one socket (``uvicorn``)."""
    import socket

    command = [sys.executable, "-m", launcher, app, "--port", str(port), "--workers", str(workers)]
    proc = subprocess.Popen([*command, "--log-level", "warning"], cwd=ROOT, env=env)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"{app} did not start")


def app_is_trellis(name: str) -> bool:
    return name.startswith("Trellis")


# --- main -------------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    from bench.http_serving import ensure_database

    ensure_database(args.database_url)
    store = tempfile.mkdtemp(prefix="trellis-bench-recserve-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "core.settings",
        "DATABASE_URL": args.database_url,
        "REDIS_URL": args.redis_url,
        "TRELLIS_VAR_DIR": store,
        "HF_HUB_OFFLINE": "1",
        "ML_SERVE_THREADS": "1",
        "ML_WARMUP": "0",
        "LEDGER_FLUSHER": args.ledger_flusher,
    }
    os.environ.update(env)
    import django
    from threadpoolctl import threadpool_limits

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import torch

    torch.set_num_threads(1)  # a serving process's count (DESIGN.md)
    in_rows, http_rows = [], []
    flusher = None
    if args.ledger_flusher == "process":  # as bin/run-all runs it
        flusher = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "flush_ledger", "--follow"], env=env, cwd=ROOT
        )
    try:
        with threadpool_limits(1):
            measure(args, env, in_rows, http_rows)
    finally:
        if flusher is not None:
            flusher.terminate()  # it ends after the batch it is writing
            flusher.wait(timeout=60)
    print(f"  ledger flusher: {args.ledger_flusher}", flush=True)
    report(in_rows, http_rows)


def measure(args, env: dict[str, str], in_rows: list, http_rows: list) -> None:
    for size in args.sizes:
        print(f"\n# catalogue {size}", flush=True)
        started = time.perf_counter()
        org = demo_org() if size == "demo" else synthetic_org(int(size))
        analyze()
        print(f"  set up in {time.perf_counter() - started:.0f} s", flush=True)
        versions = train(
            org, args.methods, large=size != "demo" and int(size) >= 100_000, hybrid_extra=args.hybrid_config
        )
        in_rows += in_process(org, versions, args, size)
        if args.http and (size == "demo" or int(size) <= 100_000):
            http_rows += over_http(org, versions, args, env, size)


def analyze() -> None:
    """Statistics for the planner on the rows just loaded, as autovacuum gives a production database within a
    minute (it is off on this project's machines: without them PostgreSQL joined all of a user's 2,682 events
    to their items before keeping the 500 latest, 4.8 ms instead of 1.9)."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE recommender_event, recommender_item")


def report(in_rows: list, http_rows: list) -> None:
    print("\n| catalogue | request | p50 ms | p99 ms | note |\n|---|---|---|---|---|")
    for size, name, p50, p99, note in in_rows:
        print(f"| {size} | {name} | {p50:.2f} | {p99:.2f} | {note} |")
    if http_rows:
        print(
            "\n| catalogue | server | clients | requests/s | p50 ms | p99 ms | server CPU ms/req | errors |"
            "\n|---|---|---|---|---|---|---|---|"
        )
        for size, name, concurrency, s in http_rows:
            print(
                f"| {size} | {name} | {concurrency} | {s['per_s']:.0f} | {s['p50']:.1f} | {s['p99']:.1f} "
                f"| {s['cpu_ms']:.2f} | {s['errors']} |"
            )
    print(machine_note())


if __name__ == "__main__":
    main()
