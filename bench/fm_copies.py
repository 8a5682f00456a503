"""What storing near-duplicate copies costs the finance monitor's ingest, beside storing originals.

The ingest (``finance_monitor.services.documents.documents_ingest``, the service every push, upload and feed
poll goes through; no HTTP) on PostgreSQL, batches of ``--batch``, for one enterprise organisation with a
five-entry watch-list, on the shipped twitter financial news texts (MIT):

- originals with the near-copy rule off (``FM_NEAR_DUPLICATES=false``, in an organisation of their own: the
  peer, what every new document cost before the rule): ``--documents`` distinct texts, validated, inserted,
  tagged with the watch-list, metered;
- originals: the same texts with the rule on (each also fingerprinted, looked up by its MinHash bands and its
  bands stored; the shipped texts hold near copies of each other, which become copies here);
- copies: a retweet (``RT @desk: <text>``) of each, stored as a copy of its original (one insert, the
  original's ``copies`` counter bumped; not tagged, never classified);
- near copies: each text with a word added at its end (``<text> today``): inserted as an original, found by
  its bands, confirmed, and turned into its original's copy (short texts stay originals);
- copies with ids: the same retweets with a client id each (inserted with ``ignore_conflicts`` and looked up
  by id);
- re-pushes: the copies with ids again (``existing``: nothing stored).

Queueing classification (a Celery message after commit) is left out of every path (a no-op here): copies
never queue it, so counting it would flatter them.

    .venv/bin/python bench/fm_copies.py --documents 3000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine_note  # noqa: E402
from bench.fm_ingest import WATCH_LIST, shipped_texts  # noqa: E402
from bench.http_serving import ensure_database  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/trellis_bench_fm_copies"
    )
    return parser.parse_args()


def run(label: str, organisation, items, batch: int) -> dict:
    from finance_monitor.services import documents as docs

    counts: dict[str, int] = {}
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        result = docs.documents_ingest(organisation=organisation, items=items[start : start + batch])
        for key, n in result.counts().items():
            counts[key] = counts.get(key, 0) + n
    seconds = time.perf_counter() - started
    return {"path": label, "pushed": len(items), "seconds": seconds, "per_s": len(items) / seconds, **counts}


def organisation_with_watch_list(name: str):
    from core.billing import services as billing
    from core.tenancy import services as tenancy
    from finance_monitor.services import entities

    organisation, _ = tenancy.organisation_sign_up(
        organisation_name=name,
        email=f"fm-copies-{name.split()[-1].lower()}@example.com",
        password="bench-password-123",  # noqa: S106 - a throwaway bench database
    )
    billing.subscription_change_plan(organisation=organisation, plan_code="enterprise")
    for kind, entity, ticker in WATCH_LIST:
        entities.entity_save(organisation=organisation, kind=kind, name=entity, ticker=ticker)
    return organisation


def main() -> None:
    args = parse_args()
    ensure_database(args.database_url)
    os.environ.update({"DATABASE_URL": args.database_url, "DJANGO_SETTINGS_MODULE": "core.settings"})
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from finance_monitor.models import Document
    from finance_monitor.services import documents as docs

    call_command("migrate", verbosity=0)
    docs.classify_enqueue = lambda **_: None  # left out of every path (see the docstring)
    texts = shipped_texts()[: args.documents]
    peer = organisation_with_watch_list("Copies bench peer")
    settings.FM_NEAR_DUPLICATES = False
    rows = [run("originals, rule off (peer)", peer, [docs.DocumentIn(text=t) for t in texts], args.batch)]
    settings.FM_NEAR_DUPLICATES = True
    organisation = organisation_with_watch_list("Copies bench")
    rows += [
        run("originals", organisation, [docs.DocumentIn(text=t) for t in texts], args.batch),
        run("copies", organisation, [docs.DocumentIn(text=f"RT @desk: {t}") for t in texts], args.batch),
        run("near copies", organisation, [docs.DocumentIn(text=f"{t} today") for t in texts], args.batch),
    ]
    keyed = [docs.DocumentIn(text=f"RT @wire: {t}", client_id=f"c{i}") for i, t in enumerate(texts)]
    rows.append(run("copies with ids", organisation, keyed, args.batch))
    rows.append(run("re-pushes of those ids", organisation, keyed, args.batch))
    stored = Document.objects.for_org(organisation)
    originals = stored.filter(duplicate_of__isnull=True)
    print(machine_note())
    print(f"{len(texts)} shipped texts, batches of {args.batch}, PostgreSQL")
    header = ("pushed", "created", "copies", "existing", "seconds", "docs/s")
    print(f"{'path':<28} " + " ".join(f"{h:>8}" for h in header))
    for r in rows:
        print(
            f"{r['path']:<28} {r['pushed']:>8} {r.get('created', 0):>8} {r.get('copies', 0):>8}"
            f" {r.get('existing', 0):>8} {r['seconds']:>8.2f} {r['per_s']:>8.0f}"
        )
    print(
        f"stored: {stored.count()} documents, {originals.count()} originals;"
        f" copies per original: {sorted(set(originals.values_list('copies', flat=True)))}"
    )


if __name__ == "__main__":
    main()
