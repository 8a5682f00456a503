"""Upload a dataset and train a classifier for an organisation, in this process (no worker needed).

    python manage.py train --org acme --app <product> --task intent --file intents.csv
        [--text-column utterance --label-column intent] [--split 80/10/10 | --test-file test.csv]
        [--method head|lora|full --epochs 4 --lexical ...] [--search-trials 8] [--follow-up lora] [--queue]

No training setting = the API's default config (a head on frozen embeddings blended with TF-IDF). The
settings are the API's ``config`` keys under the same names, checked by the same service.
"""

import argparse
from pathlib import Path

from django.core.management.base import CommandError

from core.errors import TrellisError
from core.jobs import services as jobs
from core.jobs.models import TrainingJob
from core.ml.train import METHODS, METRICS, TrainConfig
from core.registry import services
from core.registry.management import cli
from core.registry.paths import validate_app, validate_task
from core.registry.services.datasets import DEFAULT_SPLIT, DEFAULT_SPLIT_WITH_TEST_FILE
from core.registry.services.training import DEFAULT_TRAIN_CONFIG, TRAIN_KEYS, classifier_settings_check

DEFAULTS = TrainConfig()
# (option, type, help) for each ``config`` key the API accepts; the destination is the key itself.
SETTINGS = [
    ("--method", str, f"one of {', '.join(METHODS)}"),
    ("--epochs", int, "passes over the training rows (lora, full)"),
    ("--learning-rate", float, "peak learning rate (lora, full; default per method: lora 5e-4, full 5e-5)"),
    ("--batch-size", int, "rows per step (lora, full)"),
    ("--lora-r", int, "LoRA rank (lora)"),
    ("--lora-alpha", int, "LoRA scaling (lora)"),
    ("--max-length", int, "tokens kept per text"),
    ("--seed", int, "random seed"),
    ("--patience", int, "evaluations without improvement before early stopping; 0 = never (lora, full)"),
    ("--class-weights", argparse.BooleanOptionalAction, "weight classes by inverse frequency"),
    ("--metric", str, f"validation metric for early stopping and search: {', '.join(METRICS)}"),
    ("--label-smoothing", float, "label smoothing of the loss (lora, full)"),
    ("--time-budget-s", float, "stop training after this many seconds"),
    ("--lexical", argparse.BooleanOptionalAction, "blend in a TF-IDF model (weight chosen on validation)"),
    ("--calibrate", argparse.BooleanOptionalAction, "fit a confidence temperature on the validation rows"),
]
assert {option[2:].replace("-", "_") for option, _, _ in SETTINGS} == TRAIN_KEYS


class Command(cli.Command):
    help = (
        "Upload a dataset and train a classifier for an organisation. With no training setting the job uses "
        f"the API's default config {DEFAULT_TRAIN_CONFIG}; any setting given starts from the defaults shown, "
        "as a `config` sent to POST /api/models/train/ does (so --epochs alone means a LoRA fine-tune)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organisation slug")
        parser.add_argument("--app", required=True, help="the product the model is for (an installed app)")
        parser.add_argument("--task", required=True, help="a slug, e.g. intent")
        parser.add_argument("--file", required=True, type=Path, help="labelled rows, CSV or JSON Lines")
        parser.add_argument("--name", default=None, help="dataset name (default: the file name)")
        data = parser.add_argument_group("data")
        data.add_argument("--text-column", default="text", help="the file's column (or JSONL field) of texts")
        data.add_argument("--label-column", default="label", help="the file's column (or field) of labels")
        data.add_argument(
            "--split",
            default=None,
            help=f"train/validation/test percentages (default: {DEFAULT_SPLIT}, or "
            f"{DEFAULT_SPLIT_WITH_TEST_FILE} with --test-file); 100/0/0 trains on every row",
        )
        data.add_argument(
            "--test-file",
            type=Path,
            default=None,
            help="your own held-out rows (same columns): the test split",
        )
        settings = parser.add_argument_group(
            "training settings (the API's config keys; none given = the API's default config)"
        )
        for option, kind, text in SETTINGS:
            key = option[2:].replace("-", "_")
            default = getattr(DEFAULTS, key)
            shown = f"{text} (default: {default})" if key != "learning_rate" else text
            if key in DEFAULT_TRAIN_CONFIG:  # what applies when no setting is given differs
                shown = (
                    f"{text} (default: {DEFAULT_TRAIN_CONFIG[key]} when no setting is given, else {default})"
                )
            kwargs = {"action": kind} if kind is argparse.BooleanOptionalAction else {"type": kind}
            if key == "method":
                kwargs["choices"] = METHODS
            elif key == "metric":
                kwargs["choices"] = METRICS
            settings.add_argument(option, dest=key, default=argparse.SUPPRESS, help=shown, **kwargs)
        search = parser.add_argument_group(
            "hyper-parameter search and follow-up (the API's search, follow_up)"
        )
        search.add_argument(
            "--search-trials", type=int, default=None, help="run an Optuna search of this many trials"
        )
        search.add_argument(
            "--search-time-budget-s", type=float, default=None, help="stop the search after this many seconds"
        )
        search.add_argument(
            "--follow-up",
            choices=[m for m in METHODS if m != "head"],
            default=None,
            help="then fine-tune with this method, as its own job (it replaces the model only if better)",
        )
        parser.add_argument("--queue", action="store_true", help="hand the job to the worker instead")

    def handle(self, *args, **opts):
        org = cli.organisation(opts["org"])
        for key in ("file", "test_file"):
            if opts[key] is not None and not opts[key].is_file():
                raise CommandError(f"No such file: {opts[key]}")
        given = {key: opts[key] for key in sorted(TRAIN_KEYS) if key in opts}
        config = given or None
        search = {
            key: value
            for key, value in (
                ("n_trials", opts["search_trials"]),
                ("time_budget_s", opts["search_time_budget_s"]),
            )
            if value is not None
        } or None
        follow_up = {"method": opts["follow_up"]} if opts["follow_up"] else None
        test_file = opts["test_file"]
        try:
            validate_app(opts["app"])  # checked before a dataset is stored for nothing
            validate_task(opts["task"])
            checked = classifier_settings_check(config=config, search=search, follow_up=follow_up)
            dataset = services.dataset_upload(
                organisation=org,
                name=opts["name"] or opts["file"].stem,
                task="classification",
                data=opts["file"].read_bytes(),
                filename=opts["file"].name,
                columns=(opts["text_column"], opts["label_column"]),
                split=opts["split"],
                test_data=test_file.read_bytes() if test_file else None,
                test_filename=test_file.name if test_file else None,
            )
            counts = dataset.split_counts
            cli.note(
                self.stderr,
                f"dataset {dataset.name} v{dataset.version} (id {dataset.pk}): {dataset.row_count} rows, "
                f"{dataset.rejected_count} rejected; train {counts['train']}, validation "
                f"{counts['validation']}, test {counts['test']}",
            )
            job = services.model_train_start(
                organisation=org,
                dataset_id=dataset.pk,
                app=opts["app"],
                task=opts["task"],
                config=config,
                search=search,
                follow_up=follow_up,
            )
        except TrellisError as exc:
            raise CommandError(exc.message)
        cli.note(self.stderr, f"job {job.pk}: config {checked}" + (f", search {search}" if search else ""))
        if opts["queue"]:
            self.stdout.write(cli.dumps({"job": job.pk, "status": job.status}))
            return
        job = self._run(org, job.pk)
        self.stdout.write(cli.dumps({"job": job.pk, "status": job.status, **job.result}))
        follow = (job.result.get("follow_up") or {}).get("job")
        if follow:
            cli.note(self.stderr, f"follow-up job {follow}: config {follow_up}")
            job = self._run(org, follow)
            self.stdout.write(cli.dumps({"job": job.pk, "status": job.status, **job.result}))

    def _run(self, org, job_id: int) -> TrainingJob:
        printer = cli.ProgressPrinter(self.stderr)
        jobs.job_execute(job_id=job_id, on_progress=printer)
        printer.done()
        job = TrainingJob.objects.for_org(org).get(pk=job_id)
        if job.status == "failed":
            raise CommandError(f"training failed: {job.error}")
        return job
