"""Serializer fields whose constraints the OpenAPI schema shows: what the schema allows is accepted."""

from django.core.validators import RegexValidator
from rest_framework import serializers

# ``\S`` in the schema's ``pattern``: at least one character that is not white space (what ``str.strip``
# removes, which is what Python's ``\s`` matches), so blank texts are refused by the schema as by the API.
NOT_BLANK = RegexValidator(r"\S", message="This field may not be blank.")


def text_field(*, max_length: int, trim_whitespace: bool = True, **kwargs) -> serializers.CharField:
    """A required text of 1 to ``max_length`` characters that is not only white space."""
    return serializers.CharField(
        max_length=max_length, trim_whitespace=trim_whitespace, validators=[NOT_BLANK], **kwargs
    )
