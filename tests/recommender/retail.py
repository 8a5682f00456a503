"""The shipped Online Retail slice (recommender/data/online_retail, CC BY 4.0) as items and events."""

import csv
import gzip
import io
from datetime import UTC, datetime
from pathlib import Path

SLICE = Path(__file__).resolve().parents[2] / "recommender" / "data" / "online_retail" / "slice.csv.gz"


def retail_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(gzip.decompress(SLICE.read_bytes()).decode("utf-8"))))


def retail_catalogue_and_events() -> tuple[list[dict], list[dict]]:
    rows = retail_rows()
    items: dict[str, dict] = {}
    events = []
    for n, row in enumerate(rows):
        items[row["StockCode"]] = {
            "id": row["StockCode"],
            "title": row["Description"] or row["StockCode"],
            "price": row["UnitPrice"],
        }
        when = datetime.fromisoformat(row["InvoiceDate"]).replace(tzinfo=UTC)
        events.append(
            {
                "id": f"{row['InvoiceNo']}-{n}",
                "user": row["CustomerID"].removesuffix(".0"),
                "item": row["StockCode"],
                "type": "purchase",
                "value": float(row["Quantity"]),
                "occurred_at": when.isoformat(),
            }
        )
    return list(items.values()), events
