"""What the registry's commands share: help that shows defaults, the organisation look-up, progress lines.

Parsing and printing only; every decision is a service's.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter

from core.tenancy.models import Organisation

DECIMALS = 4


class HelpFormatter(DjangoHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Django's layout, with every option's default shown (``--help``); an option whose help already says
    its default, a required one and one without a default are left as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.required or action.default in (None, argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class Command(BaseCommand):
    """A command whose ``--help`` shows each option's default."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)


def _plain(message: str) -> str:
    return message


def note(stream, message: str, ending: str | None = None) -> None:
    """An informational line on stderr, uncoloured (Django colours stderr as errors on a terminal)."""
    stream.write(message, style_func=_plain, ending=ending)


def organisation(slug: str) -> Organisation:
    found = Organisation.objects.filter(slug=slug).first()
    if found is None:
        raise CommandError(f"No organisation with slug '{slug}'.")
    return found


def add_model_arguments(parser, *, action: str) -> None:
    """``--version-id``, or ``--app`` and ``--task`` for the active version (no product is assumed)."""
    parser.add_argument("--org", required=True, help="organisation slug")
    parser.add_argument(
        "--version-id",
        type=int,
        default=None,
        help=f"the model version to {action} (default: the active one)",
    )
    parser.add_argument("--app", default=None, help="the product, e.g. the one the model was trained for")
    parser.add_argument("--task", default=None, help="the task, e.g. intent")


def model_selector(opts: dict[str, Any]) -> dict[str, Any]:
    if opts["version_id"] is None and not (opts["app"] and opts["task"]):
        raise CommandError("Give --version-id, or --app and --task for the active version.")
    return {"version_id": opts["version_id"], "app": opts["app"] or "", "task": opts["task"] or ""}


def rounded(value: Any, decimals: int = DECIMALS) -> Any:
    """Floats (also inside dicts and lists) rounded for printing."""
    if isinstance(value, float):
        return round(value, decimals) if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: rounded(v, decimals) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [rounded(v, decimals) for v in value]
    return value


def dumps(value: Any) -> str:
    return json.dumps(rounded(value), ensure_ascii=False)


class ProgressPrinter:
    """Prints a job's progress reports: a redrawn bar on a terminal, one plain line each otherwise."""

    WIDTH = 30

    def __init__(self, stream) -> None:
        self.stream = stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last = ""

    def __call__(self, job) -> None:
        line = self.describe(job)
        if line == self.last:
            return
        self.last = line
        if self.tty:
            filled = int(self.WIDTH * job.progress)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            note(self.stream, f"\r[{bar}] {line}"[:200].ljust(120), ending="")
            self.stream.flush()
        else:
            note(self.stream, f"progress {line}")

    def done(self) -> None:
        if self.tty and self.last:
            note(self.stream, "")

    @staticmethod
    def describe(job) -> str:
        parts = [f"{100 * job.progress:3.0f}%"]
        m = job.metrics or {}
        if m.get("total_steps"):
            parts.append(f"step {m['step']}/{m['total_steps']}")
        if m.get("loss") is not None:
            parts.append(f"loss {m['loss']:.4f}")
        if m.get("val_metric") is not None:
            parts.append(f"val {m['val_metric']:.4f}")
        if m.get("eta_s") is not None:
            parts.append(f"ETA {m['eta_s']:.0f}s")
        if job.message and job.message != f"step {m.get('step')}/{m.get('total_steps')}":
            parts.append(job.message)
        return " | ".join(parts)
