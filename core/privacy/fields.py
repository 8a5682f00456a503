"""Secrets the platform must read back (a webhook's signing secret) sealed in the database.

``SealedCharField`` holds text that code reads and writes in the clear (``rule.webhook_secret``) while the
column holds it sealed with the master key (``TRELLIS_MASTER_KEY``, Fernet: AES-128-CBC with an HMAC) whenever
encryption at rest is on (``TRELLIS_ENCRYPT_AT_REST``): a copy of the database, a backup or a replica does not
give away what signs a tenant's webhooks. Such a secret cannot be hashed as API keys are (the platform signs
with it). Values written before encryption was turned on, or with it off (the embedded default has no key to
keep), stay readable: a sealed value carries the ``sealed:`` prefix, and re-saving seals a clear one.
Exports read it in the clear, as every other field, and imports seal it again.
"""

from typing import Any

from cryptography.fernet import InvalidToken
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from core.privacy import crypto

PREFIX = "sealed:"


def seal(value: str) -> str:
    """``value`` sealed with the master key when encryption at rest is on; else unchanged."""
    if not value or value.startswith(PREFIX) or not crypto.enabled():
        return value
    return PREFIX + crypto._master().encrypt(value.encode()).decode()


def unseal(value: str) -> str:
    if not value or not value.startswith(PREFIX):
        return value
    try:
        return crypto._master().decrypt(value[len(PREFIX) :].encode()).decode()
    except InvalidToken:
        raise ImproperlyConfigured("TRELLIS_MASTER_KEY does not open a sealed value in the database.")


class SealedCharField(models.CharField):
    """A ``CharField`` whose value is sealed in the column (module docstring). ``max_length`` bounds the clear
    text; the column is wide enough for the sealed form. Not for lookups: equal texts seal differently."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.clear_max_length = kwargs.pop("clear_max_length", kwargs.get("max_length") or 100)
        kwargs["max_length"] = sealed_length(self.clear_max_length)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[Any, Any, Any, Any]:
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("max_length", None)
        kwargs["clear_max_length"] = self.clear_max_length
        return name, path, args, kwargs

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        return value if value is None else unseal(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        return value if value is None else seal(value)


def sealed_length(clear: int) -> int:
    """Characters a sealed text of ``clear`` characters may take (UTF-8 up to 4 bytes a character; Fernet:
    57 bytes of header and HMAC, AES blocks of 16; base64; the prefix)."""
    sealed = 57 + (4 * clear // 16 + 1) * 16
    return len(PREFIX) + 4 * ((sealed + 2) // 3)


def seal_all() -> int:
    """Seal every clear value of every ``SealedCharField`` (after encryption at rest is turned on; the
    ``seal_secrets`` command, and the migration that made a field sealed). How many values were sealed."""
    from django.apps import apps

    if not crypto.enabled():
        return 0
    sealed = 0
    for model in apps.get_models():
        for field in model._meta.concrete_fields:
            if isinstance(field, SealedCharField):
                sealed += _seal_column(model, field)
    return sealed


def _seal_column(model: Any, field: "SealedCharField") -> int:
    """Seal the clear values of one column: read raw (a queryset would unseal them), written back through the
    field (which seals)."""
    from django.db import connections, router

    connection = connections[router.db_for_write(model)]
    quote = connection.ops.quote_name
    table, column, pk = quote(model._meta.db_table), quote(field.column), quote(model._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {pk}, {column} FROM {table} WHERE {column} <> ''")  # noqa: S608 - model names
        clear = [(key, raw) for key, raw in cursor.fetchall() if raw and not raw.startswith(PREFIX)]
    for key, raw in clear:
        model._base_manager.filter(pk=key).update(**{field.attname: raw})
    return len(clear)
