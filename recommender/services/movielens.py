"""MovieLens import: a GroupLens folder (``movies.csv``: movieId,title,genres; ``ratings.csv``:
userId,movieId,rating,timestamp) loaded into an organisation for evaluation, through the ordinary
catalogue and event services (so it is idempotent: a second run updates the items and stores no event
twice).

Movies become items (id = movieId, the title, the genres as the description and as categories); ratings
become ``rating`` events (id ``ml-<userId>-<movieId>``, the rating as value, the timestamp as occurred_at).
The GroupLens terms allow research use only: the data is read from where the user keeps it, never shipped,
and a model trained on it is for evaluation, never one that is sold.
"""

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.errors import InvalidInput
from recommender.services import catalogue, events
from recommender.services.rows import MAX_BATCH, IngestResult

NO_GENRES = "(no genres listed)"
MOVIE_COLUMNS = ("movieId", "title", "genres")
RATING_COLUMNS = ("userId", "movieId", "rating", "timestamp")


@dataclass
class ImportReport:
    items_created: int = 0
    items_updated: int = 0
    events_created: int = 0
    events_existing: int = 0
    rejected: int = 0
    first_rejections: list[str] = field(default_factory=list)  # up to 10, "<file>:<line>: reason"

    def add(self, result: IngestResult, *, name: str, lines: list[int]) -> None:
        self.rejected += len(result.rejected)
        for rejection in result.rejected:
            if len(self.first_rejections) < 10:
                self.first_rejections.append(f"{name}:{lines[rejection.index]}: {rejection.reason}")


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) of a GroupLens CSV, after checking its header."""
    if not path.is_file():
        raise InvalidInput(f"{path} is not there: a GroupLens folder holds movies.csv and ratings.csv.")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in columns if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidInput(f"{path.name} lacks the columns {', '.join(missing)}.")
        for row in reader:
            yield reader.line_num, row


def movie_item(row: dict[str, str]) -> dict[str, Any]:
    genres = [g for g in (row.get("genres") or "").split("|") if g and g != NO_GENRES]
    return {
        "id": (row.get("movieId") or "").strip(),
        "title": (row.get("title") or "").strip(),
        "description": ", ".join(genres),
        "categories": genres,
    }


def rating_event(row: dict[str, str]) -> dict[str, Any]:
    user, movie = (row.get("userId") or "").strip(), (row.get("movieId") or "").strip()
    try:
        when = datetime.fromtimestamp(int(row.get("timestamp") or ""), tz=UTC).isoformat()
        value: Any = float(row.get("rating") or "")
    except (ValueError, OverflowError, OSError):
        when, value = "", row.get("rating")  # rejected with the event checks' reason
    return {
        "id": f"ml-{user}-{movie}",
        "user": user,
        "item": movie,
        "type": "rating",
        "value": value,
        "occurred_at": when,
    }


def _batches(rows: Iterator[tuple[int, dict[str, str]]], size: int = MAX_BATCH):
    batch: list[tuple[int, dict[str, str]]] = []
    for numbered in rows:
        batch.append(numbered)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def movielens_import(
    *, organisation, path: Path, progress: Callable[[str], None] | None = None
) -> ImportReport:
    """Load a GroupLens folder's movies and ratings into the organisation (items first, the catalogue quota
    checked for the whole file before any is stored)."""
    movies, ratings = Path(path) / "movies.csv", Path(path) / "ratings.csv"
    report = ImportReport()
    next(_rows(ratings, RATING_COLUMNS), None)  # its header is checked before anything is stored
    items = [(line, movie_item(row)) for line, row in _rows(movies, MOVIE_COLUMNS)]
    catalogue.items_check_room(organisation=organisation, rows=[row for _, row in items])
    for batch in _batches(iter(items)):
        result = catalogue.items_upsert(organisation=organisation, rows=[row for _, row in batch])
        report.items_created += result.created
        report.items_updated += result.updated
        report.add(result, name=movies.name, lines=[line for line, _ in batch])
    if progress:
        progress(f"{report.items_created} movies added, {report.items_updated} updated")
    for n, batch in enumerate(_batches(_rows(ratings, RATING_COLUMNS)), start=1):
        result = events.events_ingest(organisation=organisation, rows=[rating_event(row) for _, row in batch])
        report.events_created += result.created
        report.events_existing += result.existing
        report.add(result, name=ratings.name, lines=[line for line, _ in batch])
        if progress and n % 20 == 0:
            progress(f"{report.events_created} ratings stored")
    return report
