"""Predict with an organisation's model: texts from stdin (one per line) or --file; JSON lines out.

echo "where is my card" | python manage.py predict --org demo-retail --task intent

Without ``--version-id`` it uses the active version of ``--app``/``--task``: by default the one
classifier task the products declare, and the product declaring the task (``Product.model_tasks``).
"""

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import TrellisError
from core.registry import services
from core.registry.paths import app_for_task, default_classifier_task
from core.tenancy.models import Organisation

BATCH = 64


class Command(BaseCommand):
    help = "Predict labels for texts (stdin or --file), one JSON line per text."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True)
        parser.add_argument(
            "--version-id", type=int, default=None, help="a model version id (default: active)"
        )
        parser.add_argument("--app", default=None, help="a product (default: the one declaring --task)")
        parser.add_argument(
            "--task", default=None, help="a model task (default: the products' one classifier)"
        )
        parser.add_argument("--file", type=Path, default=None)

    def handle(self, *args, **opts):
        organisation = Organisation.objects.filter(slug=opts["org"]).first()
        if organisation is None:
            raise CommandError(f"No organisation with slug '{opts['org']}'.")
        app, task = opts["app"] or "", opts["task"] or ""
        if opts["version_id"] is None:
            try:
                task = task or default_classifier_task()
                app = app or app_for_task(task)
            except TrellisError as exc:
                raise CommandError(exc.message)
        source = opts["file"].open(encoding="utf-8") if opts["file"] else sys.stdin
        texts = [line.rstrip("\n") for line in source if line.strip()]
        for start in range(0, len(texts), BATCH):
            chunk = texts[start : start + BATCH]
            try:
                result = services.model_predict(
                    organisation=organisation,
                    version_id=opts["version_id"],
                    app=app,
                    task=task,
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
