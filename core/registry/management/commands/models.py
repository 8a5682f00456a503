"""List an organisation's model versions.

python manage.py models --org acme [--app <product>] [--task intent] [--format table|jsonl]
"""

from core.registry import selectors, services
from core.registry.management import cli
from core.registry.models import VersionStatus

COLUMNS = ("id", "app", "task", "version", "status", "active", "method", "serving", "metrics", "created")


def _headline(metrics: dict) -> dict:
    """The scalar metrics (accuracy, macro_f1, ece, n; mrr and recall@k for embeddings)."""
    return {k: v for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}


class Command(cli.Command):
    help = "List an organisation's model versions, latest first within each app/task."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organisation slug")
        parser.add_argument("--app", default=None, help="only this product's versions")
        parser.add_argument("--task", default=None, help="only this task's versions")
        parser.add_argument("--format", choices=["table", "jsonl"], default="table", help="output format")

    def handle(self, *args, **opts):
        org = cli.organisation(opts["org"])
        versions = selectors.model_list(organisation=org, app=opts["app"], task=opts["task"])
        rows = [
            {
                "id": v.pk,
                "app": v.app,
                "task": v.task,
                "version": v.version,
                "status": v.status,
                "active": v.status == VersionStatus.ACTIVE,
                "method": v.method,
                "serving": services.serving_path(version=v),
                "metrics": cli.rounded(_headline(v.metrics or {})),
                "created": v.created_at.isoformat(timespec="seconds"),
            }
            for v in versions
        ]
        if opts["format"] == "jsonl":
            for row in rows:
                self.stdout.write(cli.dumps(row))
            return
        if not rows:
            cli.note(self.stderr, "No model versions.")
            return
        cells = [
            [str(row[c] if c != "active" else ("yes" if row[c] else "")) for c in COLUMNS[:-2]]
            + [" ".join(f"{k}={v}" for k, v in row["metrics"].items() if k != "n"), row["created"]]
            for row in rows
        ]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(COLUMNS)]
        for line in [list(COLUMNS), *cells]:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
