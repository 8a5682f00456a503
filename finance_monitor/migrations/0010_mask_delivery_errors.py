"""Delivery errors stored before the masking fix quote what the code no longer writes: a webhook url's path and
query (often a bearer secret: Slack's ``hooks/services/T/B/XXXX``), in requests' ``Max retries exceeded with
url: /path?query`` and in ``redirect to <Location> not followed``, and e-mail recipients in SMTP errors.
Each such text is masked as the code now masks targets (``alert_delivery.target_masked``: a url to its scheme
and host, an address to its first letter and domain); the old texts' patterns are this migration's own.
``target_masked`` is a pure function (no model, setting or I/O), so it is imported, not copied."""

import re
from urllib.parse import urljoin

from django.db import migrations

# an absolute url, an IPv6 host in brackets included, up to a space, quote or bracket
URL = re.compile(r"\b[a-z][a-z0-9+.\-]*://(?:\[[^\]\s]*\])?[^\s'\"<>()\[\]]*", re.I)
WITH_URL = re.compile(r"(with url: )\S+")  # urllib3: the request's path and query
REDIRECT = re.compile(r"redirect to (.*) not followed", re.S)  # the raw Location header, up to 200 characters
ADDRESS = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")


def error_masked(*, error: str, target: str, status_code: int | None) -> str:
    """An old delivery error with the url's path and query and the recipients masked; a text written by the
    current code (or with nothing to mask) comes back unchanged."""
    from finance_monitor.services.alert_delivery import target_masked

    def url(text: str) -> str:
        return target_masked(channel="webhook", target=text)

    def in_text(match: re.Match) -> str:  # punctuation after a url ends the sentence, not the url
        found = match[0]
        core = found.rstrip(".,:;!?")
        return url(core) + found[len(core) :]

    redirect = REDIRECT.fullmatch(error)
    if redirect:  # as the code now writes it: the Location resolved against the webhook's url, its host only
        status = f" ({status_code})" if status_code else ""
        return f"redirect{status} to {url(urljoin(target, redirect[1].strip()))} not followed"
    error = WITH_URL.sub(r"\1…", error)
    error = URL.sub(in_text, error)
    return ADDRESS.sub(lambda m: target_masked(channel="email", target=m[0]), error)


def mask(apps, schema_editor):
    Delivery = apps.get_model("finance_monitor", "Delivery")
    rows = Delivery._default_manager.exclude(error="").only("id", "error", "target", "status_code")
    changed = []
    for row in rows.iterator(chunk_size=2000):
        masked = error_masked(error=row.error, target=row.target, status_code=row.status_code)
        if masked != row.error:
            row.error = masked
            changed.append(row)
    Delivery._default_manager.bulk_update(changed, ["error"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("finance_monitor", "0009_document_bands"),
    ]

    operations = [
        migrations.RunPython(mask, migrations.RunPython.noop),
    ]
