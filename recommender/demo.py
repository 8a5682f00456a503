"""The demo organisation's shop (``seed_demo``): the shipped Online Retail slice (UCI, CC BY 4.0; see
``data/online_retail/ATTRIBUTION.md``) as its catalogue and purchases, and an EASE model trained on them, so
recommendations answer at once after ``make run``."""

import csv
import gzip
import io
from datetime import UTC, datetime
from pathlib import Path

from core.jobs import services as jobs
from core.products import DemoLog
from recommender.models import Item
from recommender.services import catalogue, events, training

SLICE = Path(__file__).resolve().parent / "data" / "online_retail" / "slice.csv.gz"
BATCH = 1000


def retail_catalogue_and_events(path: Path = SLICE) -> tuple[list[dict], list[dict]]:
    """The slice's items (stock code, description, price) and one purchase event per line."""
    rows = list(csv.DictReader(io.StringIO(gzip.decompress(path.read_bytes()).decode("utf-8"))))
    items: dict[str, dict] = {}
    purchases = []
    for n, row in enumerate(rows):
        code = row["StockCode"]
        items[code] = {"id": code, "title": row["Description"] or code, "price": row["UnitPrice"]}
        when = datetime.fromisoformat(row["InvoiceDate"]).replace(tzinfo=UTC)
        purchases.append(
            {
                "id": f"{row['InvoiceNo']}-{n}",
                "user": row["CustomerID"].removesuffix(".0"),
                "item": code,
                "type": "purchase",
                "value": float(row["Quantity"]),
                "occurred_at": when.isoformat(),
            }
        )
    return list(items.values()), purchases


def seed(organisation, log: DemoLog) -> str:
    """Idempotent: an organisation that already has a catalogue is left as it is."""
    if Item.objects.for_org(organisation).exists():
        return ""
    items, purchases = retail_catalogue_and_events()
    for start in range(0, len(items), BATCH):
        catalogue.items_upsert(organisation=organisation, rows=items[start : start + BATCH])
    stored = 0
    for start in range(0, len(purchases), BATCH):
        stored += events.events_ingest(
            organisation=organisation, rows=purchases[start : start + BATCH]
        ).created
    job = training.recommender_train_start(organisation=organisation, config={"method": "ease"})
    jobs.job_execute(job_id=job.pk)  # here, so the demo recommends before a worker starts
    job.refresh_from_db()
    if job.status != "succeeded":
        log.error(f"The demo recommender did not train: {job.error}")
    else:
        log.info(
            f"  recommender v{job.result['version']}: NDCG@10 {job.result['ndcg@10']:.3f} on held-out items"
        )
    return f"{len(items)} items and {stored} purchases from Online Retail (UCI, CC BY 4.0)"
