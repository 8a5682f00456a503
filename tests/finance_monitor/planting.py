"""Planted streams for the alert tests: real documents, ingested and classified through the trends service."""

import itertools
from datetime import datetime, timedelta

from finance_monitor.services import documents as docs
from finance_monitor.services.trends import document_classified

NEG = {"positive": 0.05, "neutral": 0.15, "negative": 0.8}
NEU = {"positive": 0.2, "neutral": 0.7, "negative": 0.1}
_serial = itertools.count(1)


def plant(
    organisation, hour: datetime, volume: int, negative: int, topic: str = "macro", words: str = ""
) -> list[int]:
    """``volume`` documents spread over the hour from ``hour``, ``negative`` of them negative (their ids come
    first in the answer), classified under ``topic``."""
    items = [
        docs.DocumentIn(
            text=f"{words or topic} report number {next(_serial)}",
            published_at=hour + timedelta(seconds=i * 3599 // max(volume, 1)),
        )
        for i in range(volume)
    ]
    ids = docs.documents_ingest(organisation=organisation, items=items).created
    assert len(ids) == volume
    for i, document_id in enumerate(ids):
        document_classified(
            organisation=organisation,
            document_id=document_id,
            topic=topic,
            probabilities=NEG if i < negative else NEU,
        )
    return ids


def plant_baseline(
    organisation, before: datetime, hours: int = 8, volume: int = 10, negative: int = 3, **kw
) -> None:
    """A flat stream (30% negative by default) in the ``hours`` hours before ``before``."""
    for h in range(hours, 0, -1):
        plant(organisation, before - timedelta(hours=h), volume, negative, **kw)
