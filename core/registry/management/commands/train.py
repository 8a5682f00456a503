"""Train a model for an organisation from a CSV/JSONL file, in this process (no worker needed).

    python manage.py train --org demo-retail --task intent --file intents.csv \
        [--app <product>] [--method head|lora|full] [--epochs 4] [--queue]   # --queue: the worker trains it

``--app`` defaults to the product that declares the task (``Product.model_tasks``).
"""

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from core.errors import TrellisError
from core.jobs import services as jobs
from core.jobs.models import TrainingJob
from core.registry import services
from core.registry.paths import app_for_task, validate_app, validate_task
from core.tenancy.models import Organisation


class Command(BaseCommand):
    help = "Upload a dataset and train a classifier for an organisation."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organisation slug")
        parser.add_argument("--app", default=None, help="a product (default: the one declaring --task)")
        parser.add_argument("--task", required=True)
        parser.add_argument("--file", required=True, type=Path)
        parser.add_argument("--name", default=None, help="dataset name (default: the file name)")
        parser.add_argument("--method", default="lora", choices=["head", "lora", "full"])
        parser.add_argument("--epochs", type=int, default=None)
        parser.add_argument("--queue", action="store_true", help="enqueue on the train queue instead")

    def handle(self, *args, **opts):
        organisation = Organisation.objects.filter(slug=opts["org"]).first()
        if organisation is None:
            raise CommandError(f"No organisation with slug '{opts['org']}'.")
        if not opts["file"].exists():
            raise CommandError(f"No such file: {opts['file']}")
        config = {"method": opts["method"]} | ({"epochs": opts["epochs"]} if opts["epochs"] else {})
        try:
            validate_task(opts["task"])
            app = validate_app(
                opts["app"] or app_for_task(opts["task"])
            )  # before a dataset is stored for nothing
            dataset = services.dataset_upload(
                organisation=organisation,
                name=opts["name"] or opts["file"].stem,
                task="classification",
                data=opts["file"].read_bytes(),
                filename=opts["file"].name,
            )
            self.stderr.write(
                f"dataset {dataset.name} v{dataset.version}: {dataset.row_count} rows, "
                f"{dataset.rejected_count} rejected"
            )
            job = services.model_train_start(
                organisation=organisation,
                dataset_id=dataset.pk,
                app=app,
                task=opts["task"],
                config=config,
            )
        except TrellisError as exc:
            raise CommandError(exc.message)
        if not opts["queue"]:
            jobs.job_execute(job_id=job.pk)
        job = TrainingJob.objects.for_org(organisation).get(pk=job.pk)
        if job.status == "failed":
            raise CommandError(f"training failed: {job.error}")
        self.stdout.write(json.dumps({"job": job.pk, "status": job.status, **job.result}))
