"""Job kinds owned by billing: export a month of the usage ledger as CSV (for finance teams).

``usage_export_start`` is how a client starts one (``POST /api/usage/exports/``): the period is checked
before a job exists; the handler checks it again for rows made any other way.
"""

import csv
import re
from datetime import UTC, datetime

from core.billing.selectors import usage_event_list
from core.billing.services import period_bounds
from core.errors import InvalidInput
from core.jobs import services as jobs
from core.storage import export_path

PERIOD = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])$")


def usage_export_start(*, organisation, period: str | None = None, created_by=None):
    """Queue an export of one month of the ledger (default: the current month)."""
    if period is not None and not PERIOD.fullmatch(period):
        raise InvalidInput(
            f"Invalid period '{period}': use YYYY-MM, e.g. 2026-11.", details={"field": "period"}
        )
    return jobs.job_create(
        organisation=organisation,
        kind="usage.export",
        params={"period": period} if period else {},
        created_by=created_by,
    )


def usage_export(job, reporter) -> dict:
    period = job.params.get("period") or period_bounds()[2]
    match = PERIOD.fullmatch(str(period))
    if not match:
        raise InvalidInput(f"Invalid period '{period}': use YYYY-MM, e.g. 2026-11.")
    start, end, _ = period_bounds(datetime(int(match[1]), int(match[2]), 15, tzinfo=UTC))
    events = usage_event_list(organisation=job.organisation).filter(created_at__gte=start, created_at__lt=end)
    total = events.count()
    path = export_path(job.organisation_id, f"usage-{period}-job{job.pk}.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "meter", "quantity", "api_key", "detail"])
        for n, event in enumerate(events.order_by("created_at", "id").iterator(), start=1):
            key = event.api_key.prefix if event.api_key else ""
            writer.writerow([event.created_at.isoformat(), event.meter, event.quantity, key, event.metadata])
            if n % 500 == 0:
                reporter.progress(n / total, f"{n} of {total} rows")
    reporter.progress(1.0, f"{total} rows", force=True)
    return {"rows": total, "file": path.name, "period": period}
