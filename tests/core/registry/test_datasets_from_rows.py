"""Datasets made from rows a product holds, and the retrain-from-feedback service any product calls."""

import pytest

from core.errors import Conflict, InvalidInput
from core.ml.datasets import parse_rows
from core.registry import feedback
from core.registry import services as registry
from core.registry.models import Dataset


def test_rows_follow_the_upload_rules():
    parsed = parse_rows(
        rows=[
            ("  my card  was\tstolen ", "lost_card"),
            ("write to me at jo@example.com", "contact"),
            ("MY CARD WAS STOLEN", "fraud"),  # the same text again, another label
            ("", "contact"),
            ("hello", ""),
            ("x" * 2001, "contact"),
            ("only one value",),
        ],
        task="classification",
    )
    assert parsed.rows == (("my card was stolen", "lost_card"), ("write to me at [EMAIL]", "contact"))
    assert [(r.line, r.reason) for r in parsed.rejected] == [
        (3, "duplicate"),
        (4, "empty_text"),
        (5, "empty_label"),
        (6, "too_long"),
        (7, "malformed"),
    ]
    assert parsed.format == "rows" and parsed.labels == ("contact", "lost_card")
    assert [(s.line, s.kind) for s in parsed.scrubbed] == [(2, "email")]


@pytest.mark.django_db
def test_a_dataset_from_rows_is_stored_like_an_upload(make_org):
    organisation, _owner = make_org()
    rows = [(f"question number {i}", f"answer {i}") for i in range(30)] + [("question number 1", "answer 1")]
    dataset = registry.dataset_from_rows(
        organisation=organisation, name="imported", task="pairs", rows=rows, source="import.csv"
    )
    assert (dataset.version, dataset.row_count, dataset.rejected_count) == (1, 30, 1)
    assert dataset.source_filename == "import.csv" and dataset.labels == []
    stored = registry.dataset_rows(dataset=dataset)
    assert sorted(row for split in stored.values() for row in split) == sorted(set(rows))
    assert {k: len(v) for k, v in stored.items()} == {"train": 24, "validation": 3, "test": 3}
    again = registry.dataset_from_rows(organisation=organisation, name="imported", task="pairs", rows=rows)
    assert again.version == 2 and again.fingerprint == dataset.fingerprint


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": " ", "task": "pairs", "rows": [("a", "b")]}, "needs a name"),
        ({"name": "x", "task": "ranking", "rows": [("a", "b")]}, "Unknown task"),
        ({"name": "x", "task": "classification", "rows": [("a", "b"), ("c", "b")]}, "at least 2 labels"),
        ({"name": "x", "task": "pairs", "rows": []}, "no valid rows"),
        ({"name": "x", "task": "pairs", "rows": [("a", "b")], "split": "50/60/0"}, "three percentages"),
    ],
)
def test_bad_rows_are_refused_and_store_nothing(make_org, kwargs, message):
    organisation, _owner = make_org()
    with pytest.raises(InvalidInput, match=message):
        registry.dataset_from_rows(organisation=organisation, **kwargs)
    assert not Dataset.objects.for_org(organisation).exists()


@pytest.mark.django_db
def test_feedback_needs_an_active_model_trained_on_a_dataset(make_org):
    organisation, _owner = make_org()
    with pytest.raises(Conflict, match="no active topic model trained on a dataset"):
        feedback.model_retrain_from_feedback(
            organisation=organisation, app="customer_service", task="topic", feedback=[("a", "b")]
        )
