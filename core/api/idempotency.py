"""``@idempotent`` for API view methods that run metered work: honours the ``Idempotency-Key`` header.

The edge only fingerprints the request (method, path, caller, parsed body) and translates the outcome of
``core.billing.idempotency``: a replay comes back with ``Idempotent-Replayed: true`` and runs nothing.
It runs after authentication, permissions and throttling, so a refused caller claims no key.
"""

import functools
import hashlib
import json
from typing import Any

from django.core.files.uploadedfile import UploadedFile
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework.response import Response

from core.api.request_checks import HONOURS_IDEMPOTENCY_KEY, IDEMPOTENCY_KEY_MAX, idempotency_key_problem
from core.billing import idempotency
from core.errors import InvalidInput

REPLAYED_HEADER = "Idempotent-Replayed"

IDEMPOTENCY_KEY_PARAMETER = OpenApiParameter(
    name="Idempotency-Key",
    type=OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string (1 to 255 printable ASCII characters, e.g. a UUID). A retry with the same key and "
        "the same request gets the first answer back (with `Idempotent-Replayed: true`), runs nothing and is "
        "not charged; the same key with a different request is refused (422), and while the first request "
        "runs a duplicate gets 409. Keys last 24 hours."
    ),
    pattern=f"^[\\x20-\\x7e]{{1,{IDEMPOTENCY_KEY_MAX}}}$",
)


def _canonical(value: Any) -> Any:
    if isinstance(value, UploadedFile):
        digest = hashlib.sha256()
        for chunk in value.chunks():
            digest.update(chunk)
        value.seek(0)
        return {"file": value.name, "sha256": digest.hexdigest()}
    if hasattr(value, "lists"):  # QueryDict (multipart and form bodies)
        return {k: [_canonical(v) for v in vs] for k, vs in value.lists()}
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def request_fingerprint(request) -> str:
    key = getattr(request.auth, "pk", None) if request.user.pk is None else None
    caller = f"key:{key}" if key is not None else f"user:{request.user.pk}"
    payload = json.dumps(
        [request.method, request.path, caller, _canonical(request.data)],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def idempotent(handler):
    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return handler(view, request, *args, **kwargs)
        problem = idempotency_key_problem(key)
        if problem:
            raise InvalidInput(problem, details={"field": "Idempotency-Key"})
        outcome = idempotency.idempotency_begin(
            organisation=request.organisation, key=key, fingerprint=request_fingerprint(request)
        )
        if isinstance(outcome, idempotency.Replay):
            return Response(outcome.body, status=outcome.status_code, headers={REPLAYED_HEADER: "true"})
        try:
            response = handler(view, request, *args, **kwargs)
        except BaseException:
            idempotency.idempotency_release(record=outcome)
            raise
        if 200 <= response.status_code < 300:
            idempotency.idempotency_complete(
                record=outcome, status_code=response.status_code, body=response.data
            )
        else:
            idempotency.idempotency_release(record=outcome)
        return response

    setattr(wrapper, HONOURS_IDEMPOTENCY_KEY, True)  # the request check lets the header through
    return wrapper
