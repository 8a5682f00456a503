"""The intent model most platform tests need: a head on the shipped BANKING77 slice, trained through
`manage.py train` (the product's own path) for one organisation."""

import io
from pathlib import Path

from django.core.management import call_command

from core.registry.models import ModelVersion

DATA = Path(__file__).resolve().parents[3] / "data" / "banking77"


def train_intent_model(org, tmp_path: Path) -> ModelVersion:
    path = tmp_path / f"faq-{org.pk}.csv"
    path.write_text((DATA / "train_slice.csv").read_text().replace("text,category", "text,label", 1))
    out = io.StringIO()
    call_command(
        "train",
        org=org.slug,
        app="customer_service",
        task="intent",
        file=path,
        method="head",
        stdout=out,
        stderr=out,
    )
    return ModelVersion.objects.for_org(org).latest("pk")
