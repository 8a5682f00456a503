"""The API's one error shape: ``{"error": {"code": str, "message": str, "details": {...}}}``."""

from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from core.errors import TrellisError


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def rate_limited_body(wait: int) -> dict[str, Any]:
    return error_body(
        "rate_limited", f"Too many requests for this API key; retry in {wait} s.", {"retry_after": wait}
    )


def _validation_message(detail: Any) -> str:
    if isinstance(detail, dict):
        parts = []
        for field, errors in detail.items():
            text = (
                "; ".join(str(e) for e in errors) if isinstance(errors, list) else _validation_message(errors)
            )
            parts.append(text if field == "non_field_errors" else f"{field}: {text}")
        return " ".join(parts)
    if isinstance(detail, list):
        return "; ".join(str(d) for d in detail)
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, TrellisError):
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("too_large", "The request body is too large."), status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = error_body("invalid", _validation_message(exc.detail), details)
    elif isinstance(exc, exceptions.Throttled):
        response.data = rate_limited_body(int(exc.wait or 1))
    else:
        code = getattr(exc, "default_code", "error")
        response.data = error_body(code, _validation_message(getattr(exc, "detail", str(exc))))
    return response


def json_error(
    code: str, message: str, status_code: int, details: dict[str, Any] | None = None
) -> JsonResponse:
    return JsonResponse(error_body(code, message, details), status=status_code)


def api_not_found(request, exception=None) -> JsonResponse:  # noqa: ARG001
    return json_error("not_found", "No such endpoint.", status.HTTP_404_NOT_FOUND)
