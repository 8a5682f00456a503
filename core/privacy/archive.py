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

``archive_open`` checks an uploaded archive whole before an import (``core.privacy.importing``) writes.
"""

import base64
import datetime
import decimal
import hashlib
import json
import re
import stat
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.apps import apps
from django.conf import settings
from django.db import models

from core.errors import InvalidInput
from core.privacy.ownership import (
    EXPORTED_STORES,
    NOT_EXPORTED,
    SECRET_FIELDS,
    label,
    owned_models,
    store_roots,
)
from core.storage import org_path

FORMAT = "trellis.organisation-export"
VERSION = 1
MANIFEST = "manifest.json"
STORE_PREFIX = "trellis-store:"
MANIFEST_MAX_BYTES = 16 * 1_048_576
MAX_MEMBERS = 200_000


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


# --- reading and checking an archive (the import) ------------------------------------------------------


def import_max_bytes() -> int:
    return int(getattr(settings, "IMPORT_MAX_BYTES", 20 * settings.UPLOAD_MAX_BYTES))


def refuse(message: str) -> InvalidInput:
    return InvalidInput(f"This archive cannot be imported: {message}", details={"field": "archive"})


def exportable_tables() -> set[str]:
    return {label(m) for m in owned_models() if label(m) not in NOT_EXPORTED}


def safe_name(name: str) -> list[str] | None:
    if not name or "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return parts


def _check_members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise refuse(f"it has more than {MAX_MEMBERS} members.")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        if safe_name(info.filename) is None:
            raise refuse(f"the member name '{info.filename[:100]}' leaves the archive's folder.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise refuse(f"'{info.filename[:100]}' is a symbolic link.")
        if info.flag_bits & 0x1:
            raise refuse(f"'{info.filename[:100]}' is encrypted.")
        if info.is_dir():
            continue
        if info.filename in members:
            raise refuse(f"'{info.filename[:100]}' appears twice.")
        total += info.file_size
        if total > import_max_bytes():
            raise refuse(f"it holds more than {import_max_bytes()} bytes once uncompressed.")
        members[info.filename] = info
    return members


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's bytes in chunks, never more than its declared size (zipfile checks the CRC at the end)."""
    left = info.file_size
    with zf.open(info) as handle:
        while chunk := handle.read(min(1 << 20, left + 1)):
            left -= len(chunk)
            if left < 0:
                raise refuse(f"'{info.filename[:100]}' is larger than its header says.")
            yield chunk


def member_bytes(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    return b"".join(_read(zf, info))


def _manifest(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> dict[str, Any]:
    info = members.get(MANIFEST)
    if info is None or info.file_size > MANIFEST_MAX_BYTES:
        raise refuse("it is not a Trellis organisation archive (no manifest).")
    try:
        manifest = json.loads(member_bytes(zf, info))
    except (ValueError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise refuse("it is not a Trellis organisation archive (unknown manifest).")
    if manifest.get("version") != VERSION:
        raise refuse(
            f"it is in format version {manifest.get('version')!r}; this server reads version {VERSION}."
        )
    for key, kind in (("tables", list), ("rows", dict), ("members", list), ("organisation", dict)):
        if not isinstance(manifest.get(key), kind):
            raise refuse(f"its manifest has no valid '{key}'.")
    return manifest


def _check_tables(manifest: dict[str, Any]) -> None:
    installed = exportable_tables()
    unknown = [t for t in manifest["tables"] if not isinstance(t, str) or t not in installed]
    if unknown:
        app_labels = {m._meta.app_label for m in apps.get_models()}
        missing = sorted({str(t).split(".")[0] for t in unknown} - app_labels)
        if missing:
            raise refuse(f"it was made with products not installed here ({', '.join(missing)}).")
        raise refuse(f"it holds tables this server does not have ({', '.join(map(str, unknown[:5]))}).")


def _check_listing(manifest: dict[str, Any], members: dict[str, zipfile.ZipInfo]) -> dict[str, str]:
    """Every member listed with its sha256, and nothing else there; returns path -> sha256."""
    listed: dict[str, str] = {}
    rows_ok = {rows_member(t) for t in manifest["tables"]}
    for entry in manifest["members"]:
        path = entry.get("path") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not isinstance(digest, str) or path in listed:
            raise refuse("its manifest lists a member without a path and sha256, or one twice.")
        parts = safe_name(path) or []
        is_file = len(parts) >= 3 and parts[0] == "files" and parts[1] in EXPORTED_STORES
        if path not in rows_ok and not is_file:
            raise refuse(f"its manifest lists '{path[:100]}', which no archive holds.")
        listed[path] = digest
    present = set(members) - {MANIFEST}
    if present - set(listed):
        raise refuse(f"'{sorted(present - set(listed))[0][:100]}' is not in its manifest.")
    if set(listed) - present:
        raise refuse(f"'{sorted(set(listed) - present)[0][:100]}' is in its manifest but missing.")
    return listed


def _check_sums(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], listed: dict[str, str]) -> None:
    for path, digest in listed.items():
        sha = hashlib.sha256()
        try:
            for chunk in _read(zf, members[path]):
                sha.update(chunk)
        except (zipfile.BadZipFile, OSError, EOFError):
            raise refuse(f"'{path[:100]}' is damaged.")
        if sha.hexdigest() != digest:
            raise refuse(f"the checksum of '{path[:100]}' does not match its manifest.")


def archive_open(upload: IO[bytes]) -> tuple[zipfile.ZipFile, dict[str, Any], dict[str, zipfile.ZipInfo]]:
    """The archive checked whole (names, sizes, format, tables, checksums) before anything is written."""
    try:
        zf = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise refuse("it is not a Trellis organisation archive (not a zip file).")
    try:
        members = _check_members(zf)
        manifest = _manifest(zf, members)
        _check_tables(manifest)
        _check_sums(zf, members, _check_listing(manifest, members))
    except BaseException:
        zf.close()
        raise
    return zf, manifest, members


def table_rows(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], table: str) -> Iterator[Any]:
    info = members.get(rows_member(table))
    if info is None:
        return
    buffer = b""
    for chunk in _read(zf, info):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield _json_line(line, table)
    if buffer.strip():
        yield _json_line(buffer, table)


def _json_line(line: bytes, table: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise refuse(f"a line of {table} is not JSON.")
