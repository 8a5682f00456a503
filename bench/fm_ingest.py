"""The finance monitor's ingest, end to end: documents per second accepted, tagged, de-duplicated, stored,
classified (topic and sentiment) and counted in the trends, with PostgreSQL, Redis and ONE Celery worker.

The shipped licence-clean twitter financial news texts (``finance_monitor/data/twitter_financial_news``, MIT)
are pushed through the API (``POST /api/finance-monitor/documents/batch``, batches of 1,000, one uvicorn
process) for an organisation with a watch-list and its default models (trained here, in this process, by the
product's own path on ``--train-rows`` rows per task). A share of the pushes are near-duplicates of other
pushed texts (``RT @user:`` prefixes, another link, case and spacing), which the ingest must refuse. One
worker (``celery worker -Q infer --pool=solo``, ``ML_SERVE_THREADS`` threads) classifies what was accepted
as it arrives. Reported per stage:

- accepted: documents per second the API accepted (validated, de-duplicated, stored, tagged, metered);
- classified: documents per second of the worker's busy time (the task runs' own durations), with where the
  time went (encoder passes, heads, the rest: database, trends, metering);
- end to end: documents per second from the first push to the last document counted in the trends.

Beside them, in the same run: the peer, the bare ``Predictor`` in this process on the same texts with the
same thread count (the ceiling for classification: one encoder pass for both heads, and one pass per head),
and with ``--paths shared old`` the whole pipeline again with ``FM_SHARED_ENCODER_PASS=false`` (the old
path: a pass per model).

    .venv/bin/python bench/fm_ingest.py --documents 3000 --paths shared old
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import gzip
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_note  # noqa: E402
from bench.http_serving import ensure_database, free_port, start_server  # noqa: E402

DATA = ROOT / "finance_monitor" / "data" / "twitter_financial_news"
WATCH_LIST = [
    ("company", "Apple", "AAPL"),
    ("company", "Tesla", "TSLA"),
    ("company", "Microsoft", "MSFT"),
    ("company", "Amazon", "AMZN"),
    ("keyword", "interest rate", ""),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=3000, help="distinct documents pushed per path")
    parser.add_argument("--duplicates", type=float, default=0.05, help="share of extra near-duplicate pushes")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--train-rows", type=int, default=1000, help="rows per default model (0: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the worker and the peer")
    parser.add_argument("--classify-batch", type=int, default=256, help="the worker's FM_CLASSIFY_BATCH")
    parser.add_argument(
        "--paths",
        nargs="+",
        default=["shared"],
        choices=["shared", "old", "shared-int8", "shared-nobf16"],
        help="pipelines to run, in order (shared-int8: both models serve int8 for the run, gates aside;"
        " shared-nobf16: the shared pass with ML_BF16=off, as before bf16 batch work)",
    )
    parser.add_argument(
        "--reuse", action="store_true", help="keep the database and models of the previous run (no training)"
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/trellis_fmfast")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    return parser.parse_args()


def shipped_texts(seed: int = 7) -> list[str]:
    """Every shipped text once (by the ingest's own normalised hash), shuffled."""
    from finance_monitor.services.documents import text_hash

    seen, texts = set(), []
    for name in ("topic_train.csv.gz", "sentiment_train.csv.gz"):
        with gzip.open(DATA / name, "rt", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                digest = text_hash(row["text"])
                if digest not in seen:
                    seen.add(digest)
                    texts.append(row["text"])
    random.Random(seed).shuffle(texts)
    return texts


def near_duplicate(text: str, rng: random.Random) -> str:
    """What a feed repeats: a retweet of it, another tracking link, other case and spacing."""
    text = re.sub(r"https?://\S+", "", text).strip()
    variant = rng.choice(("rt", "link", "case"))
    if variant == "rt":
        return f"RT @{rng.choice(['markets', 'wsj', 'newsbot'])}: {text}"
    if variant == "link":
        return f"{text}  https://t.co/{rng.getrandbits(40):x}"
    return "  ".join(text.upper().split(" "))


def prepare(args: argparse.Namespace, env: dict[str, str]):
    """Migrate, an enterprise organisation with a watch-list, an ingest key and its default models."""
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from core.billing import services as billing
    from core.billing.models import Plan
    from core.jobs import services as jobs
    from core.tenancy import services as tenancy
    from finance_monitor.services import defaults, entities

    call_command("migrate", verbosity=0)
    Plan.objects.filter(code="enterprise").update(requests_per_minute=1_000_000)
    if args.reuse:
        from core.tenancy.models import Organisation

        org = Organisation.objects.get(name="Ingest bench")
        _, secret = tenancy.api_key_create(organisation=org, created_by=None, name="bench", scopes=["train"])
        return org, secret
    org, _ = tenancy.organisation_sign_up(
        organisation_name="Ingest bench",
        email="fm-bench@example.com",
        password="bench-password-123",  # noqa: S106 - a throwaway bench database
    )
    billing.subscription_change_plan(organisation=org, plan_code="enterprise")
    for kind, name, ticker in WATCH_LIST:
        entities.entity_save(organisation=org, kind=kind, name=name, ticker=ticker)
    _, secret = tenancy.api_key_create(organisation=org, created_by=None, name="bench", scopes=["train"])
    settings.FM_DEFAULT_TRAIN_ROWS = args.train_rows
    started = time.perf_counter()
    for job in defaults.monitor_defaults_install(organisation=org):
        jobs.job_execute(job_id=job.pk)
    print(f"default models trained in {time.perf_counter() - started:.0f} s", flush=True)
    return org, secret


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "celery", "-A", "core", "worker", "-Q", "infer", "--pool=solo"]
    command += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-n", "fmbench@%h"]
    log = tempfile.NamedTemporaryFile("w+", prefix="fm-bench-worker-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(
        [*command, "--loglevel=INFO"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    proc.log_path = log.name  # type: ignore[attr-defined]
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # ready once it consumes (the warm-up loaded the active models)
        if "ready." in Path(log.name).read_text(errors="replace"):
            return proc
        if proc.poll() is not None:
            raise SystemExit(Path(log.name).read_text()[-3000:])
        time.sleep(0.5)
    raise SystemExit("the worker did not start")


def stop(proc: subprocess.Popen, *, group: bool = False) -> None:
    if proc.poll() is None:
        if group:  # the worker runs in a session of its own
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def push(port: int, secret: str, documents: list[dict], batch: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for start in range(0, len(documents), batch):
        body = json.dumps({"documents": documents[start : start + batch]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/finance-monitor/documents/batch",
            data=body,
            headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=600) as answer:  # noqa: S310 - our own local server
            for key, value in json.load(answer)["counts"].items():
                counts[key] = counts.get(key, 0) + value
    return counts


def worker_runs(log_path: str) -> list[tuple[float, dict]]:
    """(duration, result) of each classification run the worker logged."""
    pattern = re.compile(r"finance_monitor\.classify_documents\[[^\]]+\] succeeded in ([0-9.]+)s: (\{.*\})")
    out = []
    for match in pattern.finditer(Path(log_path).read_text(errors="replace")):
        result = ast.literal_eval(match.group(2))
        out.append((float(match.group(1)), result))
    return out


def reset(org) -> None:
    from finance_monitor.models import Document, TrendBucket

    Document.objects.for_org(org).delete()
    TrendBucket.objects.for_org(org).delete()


def run_path(name: str, args, org, secret: str, texts: list[str], env: dict[str, str]) -> dict:
    from finance_monitor.models import Document, TrendBucket

    reset(org)
    serve_int8(org, True if name == "shared-int8" else None)
    rng = random.Random(11)
    documents = [{"text": t} for t in texts]
    # near-duplicates of pushed texts, pushed after them (stored as copies of the first, never classified)
    documents += [
        {"text": near_duplicate(t, rng)} for t in rng.sample(texts, int(len(texts) * args.duplicates))
    ]
    worker_env = {
        **env,
        "ML_SERVE_THREADS": str(args.threads),
        "FM_SHARED_ENCODER_PASS": str(name != "old"),
        "FM_CLASSIFY_BATCH": str(args.classify_batch),
        **({"ML_BF16": "off"} if name == "shared-nobf16" else {}),
    }
    worker = start_worker(worker_env)
    port = free_port()
    server = start_server({**env, "ML_WARMUP": "0"}, port)
    try:
        started = time.perf_counter()
        counts = push(port, secret, documents, args.batch)
        accepted_s = time.perf_counter() - started
        pending = Document.objects.for_org(org).filter(classified_at__isnull=True, duplicate_of__isnull=True)
        deadline = time.monotonic() + 3600
        while pending.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        end_to_end_s = time.perf_counter() - started
        time.sleep(1.0)  # the last run's log line
    finally:
        stop(server)
        stop(worker, group=True)
    from finance_monitor.services.classification import document_text

    originals = Document.objects.for_org(org).filter(duplicate_of__isnull=True)
    stored_texts = [document_text(d) for d in originals.order_by("pk")]
    ceiling = peer(org, stored_texts, args.threads, shared=name != "old", bf16=name == "shared")
    int8 = {v.pk: v.quantized for v in active_versions(org)}  # what served
    from core.registry.services import serves_bf16

    bf16 = {v.pk: name == "shared" and serves_bf16(v) for v in active_versions(org)}
    serve_int8(org, None)  # back to the gates' decisions
    runs = worker_runs(worker.log_path)  # type: ignore[attr-defined]
    busy = sum(d for d, _ in runs)
    classified = sum(r["classified"] for _, r in runs)
    parts = {k: sum(r["seconds"].get(k, 0.0) for _, r in runs) for k in ("encoder", "topic", "sentiment")}
    stored = Document.objects.for_org(org).count()
    counted = sum(
        TrendBucket.objects.for_org(org)
        .filter(dimension="all", granularity="day")
        .values_list("volume", flat=True)
    )
    return {
        "path": name,
        "pushed": len(documents),
        "counts": counts,
        "stored": stored,
        "counted": counted,
        "accepted_per_s": counts.get("created", 0) / accepted_s,
        "classified_per_s": classified / busy if busy else 0.0,
        "end_to_end_per_s": counted / end_to_end_s,
        "accepted_s": accepted_s,
        "busy_s": busy,
        "end_to_end_s": end_to_end_s,
        "runs": len(runs),
        "parts": parts,
        "peer_per_s": ceiling,
        "int8": int8,
        "bf16": bf16,
    }


def active_versions(org):
    from core.registry.services.common import active_version
    from finance_monitor.services.classification import APP, SENTIMENT_TASK, TOPIC_TASK

    return [active_version(org, APP, TOPIC_TASK), active_version(org, APP, SENTIMENT_TASK)]


def serve_int8(org, on: bool | None) -> dict[int, bool]:
    """Set both models to serve int8 (``on``) or restore what their gates decided (``None``)."""
    from core.registry.models import ModelVersion

    versions = active_versions(org)
    for v in versions:
        gate = bool((v.quantization or {}).get("use_quantized", v.quantized))
        ModelVersion.all_tenants.filter(pk=v.pk).update(quantized=gate if on is None else on)
    from core.registry.services import serves_int8

    # int8 where the version passed its gate and int8 pays on this machine (ML_INT8_KERNEL=auto), else float
    return {v.pk: serves_int8(v) for v in active_versions(org)}


def peer(org, texts: list[str], threads: int, shared: bool, bf16: bool) -> float:
    """The bare predictors in this process on the same texts, as the worker's path runs them (one pass for
    both heads, or a pass per model) without the database, Celery or HTTP: documents per second."""
    from core.ml.runtime import Runtime, apply_threads
    from core.registry.services import predict_shared

    apply_threads(Runtime(base_model_path=None, device="cpu", threads=threads))
    versions = active_versions(org)
    from django.test import override_settings

    from finance_monitor.services.classification import encoder_pass

    with contextlib.nullcontext() if bf16 else override_settings(ML_BF16="off"):
        options = encoder_pass(versions)  # as the worker decides (shared-nobf16: as with ML_BF16=off)

    def run(some: list[str]) -> None:
        if shared:
            predict_shared(versions=versions, texts=some, **options)
        else:
            for version in versions:
                predict_shared(versions=[version], texts=some)

    run(texts[:64])  # loads the models the path uses
    started = time.perf_counter()
    run(texts)
    return len(texts) / (time.perf_counter() - started)


def main() -> None:
    args = parse_args()
    # the models, kept for --reuse: one folder per database, so that a run on another database (a peer's, in
    # the same session) does not replace the artifacts this database's versions point at
    database = urlparse(args.database_url).path.strip("/") or "default"
    store = str(Path(tempfile.gettempdir()) / f"trellis-bench-fm-{database}")
    if not args.reuse:
        ensure_database(args.database_url)
        shutil.rmtree(store, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL",)}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "core.settings",
            "DATABASE_URL": args.database_url,
            "REDIS_URL": args.redis_url,
            "TRELLIS_VAR_DIR": store,
            "HF_HUB_OFFLINE": "1",
            "FM_DEFAULT_MODELS_ON_FIRST_USE": "false",
            "ML_TRAIN_THREADS": "2",
        }
    )
    org, secret = prepare(args, env)
    from core.celery import app
    from finance_monitor.services.classification import classify_started

    app.control.purge()  # the default models' jobs queued a classification run: nothing waits
    classify_started(organisation_id=org.pk)
    texts = shipped_texts()[: args.documents]
    results = [run_path(name, args, org, secret, texts, env) for name in args.paths]
    print(
        f"\n{machine_note()}; {args.documents} documents, torch threads {args.threads},"
        f" API batches of {args.batch}, FM_CLASSIFY_BATCH {args.classify_batch}"
    )
    print(
        "path          pushed created  dup  stored counted accepted/s classified/s end-to-end/s  peer/s"
        "  encoder s  heads s"
    )
    for r in results:
        c = r["counts"]
        print(
            f"{r['path']:<13} {r['pushed']:>6} {c.get('created', 0):>7} {c.get('duplicate', 0):>4}"
            f" {r['stored']:>7}"
            f" {r['counted']:>7} {r['accepted_per_s']:>11.1f} {r['classified_per_s']:>12.1f}"
            f" {r['end_to_end_per_s']:>12.1f} {r['peer_per_s']:>7.1f} {r['parts']['encoder']:>10.1f}"
            f" {r['parts']['topic'] + r['parts']['sentiment']:>8.1f}"
        )
        print(
            f"        accept {r['accepted_s']:.1f} s, worker busy {r['busy_s']:.1f} s in {r['runs']} runs,"
            f" first push to last counted {r['end_to_end_s']:.1f} s; int8 served: {r['int8']},"
            f" bf16 encoder: {r['bf16']}"
        )
    print(
        "peer/s: the same path's bare predictors in this process on the same texts (no database, queue, HTTP)"
    )


if __name__ == "__main__":
    main()
