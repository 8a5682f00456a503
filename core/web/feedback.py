"""What a page tells its user after a form: an upload's outcome as one flash message."""

from django.contrib import messages

REJECTIONS_SHOWN = 10  # rejected lines named in the message; the rest are counted


def upload_outcome(request, summary: str, rejected: list[tuple[int, str]]) -> None:
    """``summary`` as a success, or with the first rejected lines (line number, reason) as a warning."""
    if not rejected:
        messages.success(request, summary)
        return
    shown = "; ".join(f"line {line}: {reason}" for line, reason in rejected[:REJECTIONS_SHOWN])
    more = len(rejected) - REJECTIONS_SHOWN
    messages.warning(request, f"{summary} {shown}{f'; and {more} more' if more > 0 else ''}.")
