"""The ``ml.train`` job in sentences: what it trains on how many rows, where it is, and how it ended.

"Training the intent model on 1,200 questions: epoch 2 of 4, about 40 s left." /
"Finished: 94% of held-out questions answered right. It is now the active model." The raw fields stay one
click away on the job page.
"""

import math
import re
from typing import Any

from core import products
from core.jobs.describe import generic_sentence
from core.jobs.models import JobStatus
from core.ml.textforms import described, manifest_form
from core.products import model_task

VERBS = {"head": "Training", "lora": "Fine-tuning", "full": "Fully fine-tuning"}
KEPT = re.compile(r"kept v(\d+)")
BEAT = re.compile(r"beat v(\d+)")


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


def _duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def _task(job) -> tuple[str, str]:
    """The job's (app, task): its parameters', or the one model task its product declares (a product's own
    training job, such as the recommender's, need not name it)."""
    params = job.params or {}
    app = params.get("app") or getattr(job, "app", "") or ""
    task = params.get("task")
    if not task:
        spec = products.product(app)
        declared = [t.name for t in spec.model_tasks] if spec else []
        if len(declared) != 1:
            raise KeyError("task")
        task = declared[0]
    return app, task


def _subject(job) -> tuple[str, str]:
    """("Training the intent model on 1,200 questions", "questions")."""
    params = job.params or {}
    app, task = _task(job)
    declared = model_task(app, task)
    examples = declared.examples if declared else "examples"
    config = params.get("config") or {}
    verb = "Searching settings for" if params.get("search") else VERBS.get(config.get("method"), "Training")
    text = f"{verb} the {task.replace('_', ' ')} model"
    if params.get("rows"):
        text += f" on {params['rows']:,} {examples}"
    return text, examples


def _running(job, subject: str) -> str:
    m = job.metrics or {}
    step, total, epoch = m.get("step") or 0, m.get("total_steps") or 0, m.get("epoch") or 0
    if step and total:
        epochs = max(1, round(total * epoch / step)) if epoch else None
        where = f"epoch {min(epochs, max(1, math.ceil(epoch)))} of {epochs}" if epochs else ""
        where = where or f"step {step} of {total}"
        if m.get("eta_s") is not None:
            where += f", about {_duration(m['eta_s'])} left"
        return f"{subject}: {where}."
    message = (job.message or "").strip()
    if not message or message == "Started":
        return f"{subject}: starting."
    message = re.sub(r"(\d+)/(\d+)", r"\1 of \2", message)
    return f"{subject}: {message[0].lower()}{message[1:]}."


def _promotion(result: dict[str, Any], examples: str) -> str:
    note = str(result.get("promotion") or "")
    if result.get("promoted"):
        beat = BEAT.search(note)
        if beat:
            return f"It replaced version {beat.group(1)}, which it beat on the same held-out {examples}."
        return "It is now the active model."
    kept = KEPT.search(note)
    if kept and "different kind" in note:
        kept_one = kept.group(1)
        return f"Version {kept_one} stays active (a different kind of model): activate it by hand."
    if kept:
        same = f"the same held-out {examples}"
        return f"Version {kept.group(1)} stays active: it did as well or better on {same}."
    return "It was not made active."


def _score(result: dict[str, Any], examples: str) -> str:
    """The headline figure of a trained model in words, from the figures its kind reports ("" if none)."""
    if "accuracy" in result:
        score = f"{_pct(result['accuracy'])} of held-out {examples} answered right"
        if result.get("macro_f1") is not None:
            score += f" (macro-F1 {result['macro_f1']:.2f}: the F1 of every label averaged, rare ones alike)"
        return score
    if "recall@1" in result:
        return f"the right answer came first for {_pct(result['recall@1'])} of held-out {examples}"
    if "ndcg@10" in result:
        score = f"NDCG@10 {result['ndcg@10']:.3f} on held-out {examples}"
        if result.get("hr@10") is not None:
            score += f"; the item each chose next was in the top 10 for {_pct(result['hr@10'])} of them"
        return score
    return ""


def _finished(result: dict[str, Any], examples: str) -> str:
    score = _score(result, examples)
    if not score:
        return "Finished."
    return f"Finished: {score}. {_promotion(result, examples)}"


def train_job_sentence(job) -> str:
    subject, examples = _subject(job)
    if job.status == JobStatus.QUEUED:
        return f"Waiting for a free worker. Next: {subject[0].lower()}{subject[1:]}."
    if job.status == JobStatus.RUNNING:
        return _running(job, subject)
    if job.status == JobStatus.SUCCEEDED:
        return _finished(job.result or {}, examples)
    if job.status == JobStatus.FAILED:
        return f"{subject} failed: {job.error or 'no reason was recorded.'}"
    return generic_sentence(job)


# --- a model version, in words (its page; the figures stay one click away) -----------------------------

KINDS_OF_TRAINING = {
    "head": "a fast model: a small layer trained on your data on top of a general-purpose language model",
    "lora": "a fine-tuned model: the language model itself adjusted to your data (with small add-on weights)",
    "full": "a fully fine-tuned model: every weight of the language model adjusted to your data",
}
STATUS_WORDS = {
    "active": "In use now: this is the version that answers.",
    "ready": "Ready, not in use: the active version scored as well or better.",
    "archived": "Archived: it no longer answers.",
}


def version_sentences(version) -> list[str]:
    """What a person needs to know about a version, in plain words."""
    declared = model_task(version.app, version.task)
    examples = declared.examples if declared else "examples"
    metrics = version.metrics or {}
    made = f"a model made with the {version.method} method" if version.method else "a trained model"
    what = KINDS_OF_TRAINING.get(version.method, made)
    lines = [f"The {version.task.replace('_', ' ')} model, version {version.version}: {what}."]
    if "accuracy" in metrics and metrics.get("n"):
        lines.append(
            f"On {metrics['n']:,} held-out {examples} (kept aside, never trained on) it answered "
            f"{_pct(metrics['accuracy'])} right."
        )
        if metrics.get("ece") is not None:
            off = 100 * metrics["ece"]
            page = declared.threshold_page if declared else ""
            rough = f"compare thresholds on {page}" if page else "read them as an order, not as exact chances"
            trust = "can be trusted as they are" if off < 5 else f"are rough: {rough}"
            lines.append(f"Its confidence figures are off by {off:.0f} points on average: they {trust}.")
    elif "recall@1" in metrics and metrics.get("n"):
        lines.append(
            f"On {metrics['n']:,} held-out {examples} it put the right answer first for "
            f"{_pct(metrics['recall@1'])}."
        )
    form = described(manifest_form(version.manifest))
    if form:
        lines.append(f"It reads every text with {form}, as it was trained.")
    if getattr(version, "quantized", False):
        lines.append("It runs in a compact form that is faster and answered as well as the full one.")
    lines.append(STATUS_WORDS.get(version.status, f"Status: {version.status}."))
    return lines
