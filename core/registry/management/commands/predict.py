"""Predict with an organisation's model: texts from stdin (one per line) or --file; JSON lines out.

echo "where is my card" | python manage.py predict --org demo-retail --app customer_service --task intent
"""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import TrellisError
from core.registry import services
from core.tenancy.models import Organisation

BATCH = 64


class Command(BaseCommand):
    help = "Predict labels for texts (stdin or --file), one JSON line per text."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True)
        parser.add_argument(
            "--version-id", type=int, default=None, help="a model version id (default: active)"
        )
        parser.add_argument("--app", default="customer_service")
        parser.add_argument("--task", default="intent")
        parser.add_argument("--file", type=Path, default=None)

    def handle(self, *args, **opts):
        organisation = Organisation.objects.filter(slug=opts["org"]).first()
        if organisation is None:
            raise CommandError(f"No organisation with slug '{opts['org']}'.")
        source = opts["file"].open(encoding="utf-8") if opts["file"] else sys.stdin
        texts = [line.rstrip("\n") for line in source if line.strip()]
        for start in range(0, len(texts), BATCH):
            chunk = texts[start : start + BATCH]
            try:
                result = services.model_predict(
                    organisation=organisation,
                    version_id=opts["version_id"],
                    app=opts["app"],
                    task=opts["task"],
                    texts=chunk,
                )
            except TrellisError as exc:
                raise CommandError(exc.message)
            for text, p in zip(chunk, result["predictions"], strict=True):
                self.stdout.write(
                    json.dumps(
                        {
                            "text": text,
                            "label": p["label"],
                            "probabilities": p["probabilities"],
                            "version": p["version"],
                        }
                    )
                )
