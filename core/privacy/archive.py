"""The organisation archive's format, shared by the export (``core.privacy.export``) and the import
(``core.privacy.importing``).

A zip with:

- ``manifest.json``: ``format`` and ``version`` (this module's), the organisation (id, name, slug), when it
  was made, the installed apps, the tables in ownership order (parents first) with their row counts, and every
  other member's path, size and sha256;
- ``rows/<app_label>.<Model>.jsonl``: one JSON object a line per row, every concrete field by its column
  name (``organisation_id``, ``conversation_id``...) but the secrets (``ownership.SECRET_FIELDS``); binary
  values in base64; paths into the organisation's store folders written as ``trellis-store:<store>/<rest>``
  so they mean the same on any server;
- ``files/<store>/<path below the organisation's folder>``: every file of the organisation's model and
  dataset stores, in plaintext (decrypted when encryption at rest is on).
"""

import base64
import datetime
import decimal
import json
import uuid
from pathlib import Path
from typing import Any

from django.db import models

from core.privacy.ownership import EXPORTED_STORES, SECRET_FIELDS, store_roots
from core.storage import org_path

FORMAT = "trellis.organisation-export"
VERSION = 1
MANIFEST = "manifest.json"
STORE_PREFIX = "trellis-store:"


def rows_member(label: str) -> str:
    return f"rows/{label}.jsonl"


def exported_fields(model: type[models.Model]) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if f.name not in SECRET_FIELDS]


def store_folders(organisation_id: int) -> dict[str, Path]:
    """The organisation's folder in each store an archive carries."""
    roots = store_roots()
    return {name: org_path(roots[name], organisation_id) for name in EXPORTED_STORES}


class PathRewriter:
    """Turns the organisation's absolute store paths into portable ones (export) and back (import)."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = {name: str(folder) for name, folder in folders.items()}

    def to_portable(self, value: Any) -> Any:
        if isinstance(value, str):
            for name, folder in self.folders.items():
                if value == folder or value.startswith(folder + "/"):
                    return f"{STORE_PREFIX}{name}{value[len(folder) :]}"
            return value
        if isinstance(value, list):
            return [self.to_portable(v) for v in value]
        if isinstance(value, dict):
            return {k: self.to_portable(v) for k, v in value.items()}
        return value


def encode_value(field: models.Field, value: Any, paths: PathRewriter) -> Any:
    if value is None:
        return None
    if isinstance(value, bytes | memoryview | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return paths.to_portable(value)


def encode_row(obj: models.Model, fields: list[models.Field], paths: PathRewriter) -> str:
    return json.dumps(
        {f.attname: encode_value(f, f.value_from_object(obj), paths) for f in fields},
        ensure_ascii=False,
        separators=(",", ":"),
    )
