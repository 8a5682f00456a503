"""Names every topic module of the chatbot's services shares: the app and the model tasks it trains; and the
CSV its datasets are uploaded as."""

import csv
import io
from collections.abc import Iterable, Sequence

APP = "customer_service"
INTENT_TASK = "intent"
RETRIEVAL_TASK = "retrieval"


def csv_bytes(header: Sequence[str], rows: Iterable[Sequence[str]]) -> bytes:
    """``header`` and ``rows`` as the CSV file a dataset upload reads."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()
