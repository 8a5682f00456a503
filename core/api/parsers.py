"""The API's JSON parser: DRF's, with nesting bounded so that a hostile body is a 400, never a 500.

A body nested deeper than Python's recursion limit raises ``RecursionError`` inside ``json.load``, which DRF
does not translate; a body a little shallower parses but can exhaust the stack later (serializers, JSON
fields, the idempotency fingerprint). Both are refused here as a parse error naming the limit.
"""

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 64


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` (parsed JSON) nests lists and objects more than ``limit`` levels deep. Iterative."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):  # noqa: ANN001
        too_deep = ParseError(f"JSON parse error - the body is nested more than {MAX_JSON_DEPTH} levels deep")
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if json_depth_exceeds(data):
            raise too_deep
        return data
