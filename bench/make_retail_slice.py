"""Re-make the Online Retail slice shipped in ``recommender/data/online_retail/`` (CC BY 4.0, see its
ATTRIBUTION.md) from the full file in ``../shared/data/online_retail``.

The slice: purchase lines (a customer, a positive quantity, no cancellation) of September and October 2011,
the densest two months of the copy, from the customers whose id hashes into the first ``--share`` of 100
buckets (a stable sample), each customer's lines kept whole. The columns and their format are the
original's (one header, the same order), so the shipped file reads like the full one.

    .venv/bin/python bench/make_retail_slice.py   # writes recommender/data/online_retail/slice.csv.gz
"""

import argparse
import csv
import gzip
import hashlib
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz"
TARGET = ROOT / "recommender" / "data" / "online_retail" / "slice.csv.gz"


def keep(row: dict[str, str], *, start: str, end: str, share: int) -> bool:
    if not row["CustomerID"] or row["InvoiceNo"].startswith("C"):
        return False
    if not (start <= row["InvoiceDate"] < end) or float(row["Quantity"]) <= 0:
        return False
    bucket = int(hashlib.sha256(row["CustomerID"].encode()).hexdigest()[:8], 16) % 100
    return bucket < share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--target", type=Path, default=TARGET)
    parser.add_argument("--start", default="2011-09-01")
    parser.add_argument("--end", default="2011-11-01")
    parser.add_argument("--share", type=int, default=20, help="percent of the customers kept (by hash)")
    args = parser.parse_args()
    with gzip.open(args.source, "rt", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        rows = [r for r in reader if keep(r, start=args.start, end=args.end, share=args.share)]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    # mtime=0: the same input gives the same bytes
    args.target.write_bytes(gzip.compress(out.getvalue().encode(), mtime=0))
    customers = len({r["CustomerID"] for r in rows})
    items = len({r["StockCode"] for r in rows})
    print(f"{len(rows)} lines, {customers} customers, {items} items -> {args.target}")


if __name__ == "__main__":
    main()
