"""Evaluate a model version on a labelled file: accuracy, macro-F1, per-class scores (training's metric code).

python manage.py evaluate --org acme --version-id 12 --file test.csv [--label-column intent]
"""

from pathlib import Path

from django.core.management.base import CommandError

from core.errors import TrellisError
from core.registry import services
from core.registry.management import cli


class Command(cli.Command):
    help = (
        "Score a model version (default: the active one for --app/--task) on a labelled CSV or JSON Lines "
        "file, through the path that serves it (float or int8). Metered per text, like predictions."
    )

    def add_arguments(self, parser):
        cli.add_model_arguments(parser, action="evaluate")
        parser.add_argument("--file", required=True, type=Path, help="labelled rows, CSV or JSON Lines")
        parser.add_argument(
            "--text-column", default="text", help="the file's column (or JSONL field) of texts"
        )
        parser.add_argument("--label-column", default="label", help="the file's column (or field) of labels")
        parser.add_argument(
            "--format", choices=["json", "text"], default="json", help="one JSON object, or a per-class table"
        )

    def handle(self, *args, **opts):
        org = cli.organisation(opts["org"])
        if not opts["file"].is_file():
            raise CommandError(f"No such file: {opts['file']}")
        try:
            result = services.model_evaluate(
                organisation=org,
                **cli.model_selector(opts),
                data=opts["file"].read_bytes(),
                filename=opts["file"].name,
                columns=(opts["text_column"], opts["label_column"]),
            )
        except TrellisError as exc:
            raise CommandError(exc.message)
        m = result["metrics"]
        cli.note(
            self.stderr,
            f"model version {result['model_version']} "
            f"({result['app']}/{result['task']} v{result['version']}), "
            f"serving {result['serving']}: accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, "
            f"ECE {m['ece']:.4f} on {m['n']} rows ({result['rejected']} rejected)",
        )
        if opts["format"] == "json":
            self.stdout.write(cli.dumps(result))
            return
        width = max(len("label"), *(len(label) for label in m["per_class"]))
        self.stdout.write(f"{'label':<{width}}  precision  recall  f1      support")
        for label, scores in sorted(m["per_class"].items()):
            self.stdout.write(
                f"{label:<{width}}  {scores['precision']:<9.4f}  {scores['recall']:<6.4f}  "
                f"{scores['f1']:<6.4f}  {scores['support']:.0f}"
            )
        self.stdout.write(f"{'accuracy':<{width}}  {m['accuracy']:.4f}")
        self.stdout.write(f"{'macro-F1':<{width}}  {m['macro_f1']:.4f}")
