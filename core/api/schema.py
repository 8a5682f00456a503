"""The OpenAPI schema as the API behaves (``DEFAULT_SCHEMA_CLASS``), and the API-key scheme.

drf-spectacular describes each operation from its ``extend_schema``; ``TrellisAutoSchema`` adds what every
operation shares, so no view has to repeat it:
- the error answers each operation can give, in the one error shape (``Error``): 400 (bad input, query
  parameters or headers), 401, 402 (a quota, the monthly API calls included), 403 and 429 everywhere; 404
  where the path or the body names an object or the list is paginated; 409, 413 and 415 where a body is
  sent; 409 and
  422 where an ``Idempotency-Key`` is accepted;
- paginated lists as ``Paginated<X>List`` (``{count, next, previous, results}``) for views that declare
  ``pagination_class`` (``core.api.views.paginate`` reads the same attribute);
- ``minItems: 1`` for list fields that refuse an empty list (drf-spectacular leaves ``allow_empty`` out), and
  ``additionalProperties: false`` for inputs that refuse unknown fields (``StrictSerializer``).
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from core.api.serializers import StrictSerializer


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "core.api.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An organisation API key (trl_...)."}


class ErrorDetailOut(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField(child=serializers.JSONField(), help_text="What was refused, by field.")


class ErrorOut(serializers.Serializer):
    error = ErrorDetailOut()

    class Meta:
        ref_name = "Error"


ERRORS = {
    400: "The request is malformed or invalid (body, query parameters or headers).",
    401: "No valid API key or session.",
    402: "Over a quota of the plan (meter, limit and period in details).",
    403: "The key's scopes or the member's role do not allow this.",
    404: "No such object in this organisation (or no such page of the list).",
    409: "Conflicts with the current state (e.g. a request with the same Idempotency-Key is still running).",
    413: "The request body is too large.",
    415: "The body's content type is not accepted.",
    422: "The Idempotency-Key was already used for a different request.",
    429: "Over the key's requests per minute; retry after Retry-After seconds.",
}
RETRY_AFTER = {
    "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}
}
BODY_METHODS = ("POST", "PUT", "PATCH")


class TrellisAutoSchema(AutoSchema):
    def _accepts_idempotency_key(self) -> bool:
        return any(
            isinstance(p, OpenApiParameter) and p.name == "Idempotency-Key"
            for p in self.get_override_parameters()
        )

    def _error_codes(self) -> list[int]:
        codes = [400, 401, 402, 403, 429]
        if "{" in self.path or self._get_paginator() is not None:
            codes.append(404)
        if self.method in BODY_METHODS:  # the body may name an object (a dataset, a model) that is not there
            codes += [404, 409, 413, 415]
        elif self.method == "DELETE":
            codes.append(409)
        if self._accepts_idempotency_key():
            codes += [409, 422]
        return sorted(set(codes))

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            if str(code) in responses:
                continue
            response = self._get_response_for_code(
                OpenApiResponse(ErrorOut, description=ERRORS[code]),
                str(code),
                ["application/json"],
                direction,
            )
            if code == 429:
                response["headers"] = RETRY_AFTER
            responses[str(code)] = response
        return responses

    def _get_paginator(self):
        if self.method != "GET":
            return None
        return super()._get_paginator()

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(serializer, StrictSerializer):
            schema["additionalProperties"] = False  # unknown fields are refused (400)
        return schema

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if (
            isinstance(field, serializers.ListField)
            and not field.allow_empty
            and isinstance(schema, dict)
            and schema.get("type") == "array"
        ):
            schema.setdefault("minItems", 1)
        return schema
