"""One error vocabulary for the ML runtime.

Every error raised on purpose by ``core.ml`` derives from :class:`MLError`; its message is user-facing and
safe to show to a tenant. The platform translates these into a failed job or an API error at its edges.
"""

from __future__ import annotations


class MLError(Exception):
    """Base class; ``str(error)`` is a user-facing message."""


class TrainingCancelled(MLError):
    """Training (or a search) stopped because the caller's ``should_stop()`` returned True."""


class ArtifactError(MLError):
    """An artifact could not be written, read or trusted (missing files, hash mismatch, target exists)."""


class UnknownLabelError(MLError):
    """A label was given that the model was not trained on."""


class BatcherClosed(MLError):
    """A micro-batcher was asked for predictions after ``close()`` (its version was evicted)."""
