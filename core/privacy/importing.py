"""Re-creating an organisation from its archive (``core.privacy.archive``) in a new, empty organisation.

``organisation_import`` checks the whole archive before it writes anything: a zip whose member names are
plain relative paths (no ``..``, no absolute path, no symlink, nothing the manifest does not list), whose
uncompressed size stays under ``IMPORT_MAX_BYTES``, with this module's format and version, a sha256 that
matches for every member, and only tables of apps installed here. Then, in one transaction: the rows of
every imported table in ownership order (parents first), each with a new primary key, foreign keys pointed
at the new rows, the organisation's key at the new organisation, paths into the store folders rewritten to
the new organisation's folders (a dataset's folder is named by its new id), references of the form
``version:<id>`` (retrieval vectors' embedder) to the new model version, values of globally unique columns
with a default (the chat widget's public key, conversations' public ids) drawn afresh, and secrets left out
of the archive emptied; the plan's stock meters checked (402 with the meter's words); the files written into
the new organisation's folders (sealed with its key when encryption at rest is on); the audit line. A
failure anywhere rolls the rows back and removes the files written, so nothing is half-imported.

Not imported (``ownership.NOT_IMPORTED``, said there why): people, invitations and API keys; the plan, its
counters and the ledger; idempotency records, jobs and the audit log. Relations to them are left empty.
"""

import hashlib
import json
import re
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, models, transaction

from core.billing import services as billing
from core.billing.meters import stock_count, stock_meters
from core.errors import Conflict, InvalidInput
from core.privacy import archive
from core.privacy.audit import Action, audit_record
from core.privacy.ownership import (
    EXPORTED_STORES,
    NOT_IMPORTED,
    SECRET_FIELDS,
    STORE_ID_FOLDERS,
    label,
    organisation_field,
    owned_models,
    rows_of,
    store_roots,
)
from core.products import products
from core.storage import org_path, write_org_file

MANIFEST_MAX_BYTES = 16 * 1_048_576
MAX_MEMBERS = 200_000
_VERSION_REF = re.compile(r"^version:([0-9]{1,12})$")
_BATCH = 500


def import_max_bytes() -> int:
    return int(getattr(settings, "IMPORT_MAX_BYTES", 20 * settings.UPLOAD_MAX_BYTES))


def _refuse(message: str) -> InvalidInput:
    return InvalidInput(f"This archive cannot be imported: {message}", details={"field": "archive"})


# --- what the new organisation already holds -------------------------------------------------------------


def _singleton(model: type[models.Model]) -> bool:
    """One row per organisation (settings such as the chat bot's, made on first visit): the archive's row
    replaces the new organisation's, and having one does not count as having data."""
    field = organisation_field(model)
    if model._meta.get_field(field).unique:
        return True
    return any(
        isinstance(c, models.UniqueConstraint) and list(c.fields) == [field] and c.condition is None
        for c in model._meta.constraints
    )


def imported_models() -> list[type[models.Model]]:
    return [m for m in owned_models() if label(m) not in NOT_IMPORTED and label(m) in _exportable()]


def _exportable() -> set[str]:
    from core.privacy.ownership import NOT_EXPORTED

    return {label(m) for m in owned_models() if label(m) not in NOT_EXPORTED}


def organisation_data(*, organisation) -> list[str]:
    """What the organisation holds that an import would collide with: tables with rows, stores with files."""
    held = [label(m) for m in imported_models() if not _singleton(m) and rows_of(m, organisation.pk).exists()]
    for store, folder in archive.store_folders(organisation.pk).items():
        if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
            held.append(f"files: {store}")
    return held


# --- checking the archive ---------------------------------------------------------------------------------


def _safe_name(name: str) -> list[str] | None:
    if not name or "\\" in name or "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return None
    parts = name.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    return parts


def _check_members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _refuse(f"it has more than {MAX_MEMBERS} members.")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        if _safe_name(info.filename) is None:
            raise _refuse(f"the member name '{info.filename[:100]}' leaves the archive's folder.")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _refuse(f"'{info.filename[:100]}' is a symbolic link.")
        if info.flag_bits & 0x1:
            raise _refuse(f"'{info.filename[:100]}' is encrypted.")
        if info.is_dir():
            continue
        if info.filename in members:
            raise _refuse(f"'{info.filename[:100]}' appears twice.")
        total += info.file_size
        if total > import_max_bytes():
            raise _refuse(f"it holds more than {import_max_bytes()} bytes once uncompressed.")
        members[info.filename] = info
    return members


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """A member's bytes in chunks, never more than its declared size (zipfile checks the CRC at the end)."""
    left = info.file_size
    with zf.open(info) as handle:
        while chunk := handle.read(min(1 << 20, left + 1)):
            left -= len(chunk)
            if left < 0:
                raise _refuse(f"'{info.filename[:100]}' is larger than its header says.")
            yield chunk


def _member_bytes(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    return b"".join(_read(zf, info))


def _manifest(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo]) -> dict[str, Any]:
    info = members.get(archive.MANIFEST)
    if info is None or info.file_size > MANIFEST_MAX_BYTES:
        raise _refuse("it is not a Trellis organisation archive (no manifest).")
    try:
        manifest = json.loads(_member_bytes(zf, info))
    except (ValueError, UnicodeDecodeError):
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("format") != archive.FORMAT:
        raise _refuse("it is not a Trellis organisation archive (unknown manifest).")
    if manifest.get("version") != archive.VERSION:
        raise _refuse(
            f"it is in format version {manifest.get('version')!r}; "
            f"this server reads version {archive.VERSION}."
        )
    for key, kind in (("tables", list), ("rows", dict), ("members", list), ("organisation", dict)):
        if not isinstance(manifest.get(key), kind):
            raise _refuse(f"its manifest has no valid '{key}'.")
    return manifest


def _check_tables(manifest: dict[str, Any]) -> None:
    installed = _exportable()
    unknown = [t for t in manifest["tables"] if not isinstance(t, str) or t not in installed]
    if unknown:
        app_labels = {m._meta.app_label for m in apps.get_models()}
        missing = sorted({str(t).split(".")[0] for t in unknown} - app_labels)
        if missing:
            raise _refuse(f"it was made with products not installed here ({', '.join(missing)}).")
        raise _refuse(f"it holds tables this server does not have ({', '.join(map(str, unknown[:5]))}).")


def _check_listing(manifest: dict[str, Any], members: dict[str, zipfile.ZipInfo]) -> dict[str, str]:
    """Every member listed with its sha256, and nothing else there; returns path -> sha256."""
    listed: dict[str, str] = {}
    rows_ok = {archive.rows_member(t) for t in manifest["tables"]}
    for entry in manifest["members"]:
        path = entry.get("path") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not isinstance(digest, str) or path in listed:
            raise _refuse("its manifest lists a member without a path and sha256, or one twice.")
        parts = _safe_name(path)
        is_file = parts is not None and len(parts) >= 3 and parts[:1] == ["files"]
        is_file = is_file and parts[1] in EXPORTED_STORES
        if path not in rows_ok and not is_file:
            raise _refuse(f"its manifest lists '{path[:100]}', which no archive holds.")
        listed[path] = digest
    present = set(members) - {archive.MANIFEST}
    if present - set(listed):
        raise _refuse(f"'{sorted(present - set(listed))[0][:100]}' is not in its manifest.")
    if set(listed) - present:
        raise _refuse(f"'{sorted(set(listed) - present)[0][:100]}' is in its manifest but missing.")
    return listed


def _check_sums(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], listed: dict[str, str]) -> None:
    for path, digest in listed.items():
        sha = hashlib.sha256()
        try:
            for chunk in _read(zf, members[path]):
                sha.update(chunk)
        except (zipfile.BadZipFile, OSError, EOFError):
            raise _refuse(f"'{path[:100]}' is damaged.")
        if sha.hexdigest() != digest:
            raise _refuse(f"the checksum of '{path[:100]}' does not match its manifest.")


def archive_open(upload: IO[bytes]) -> tuple[zipfile.ZipFile, dict[str, Any], dict[str, zipfile.ZipInfo]]:
    """The archive checked whole (names, sizes, format, tables, checksums) before anything is written."""
    try:
        zf = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise _refuse("it is not a Trellis organisation archive (not a zip file).")
    try:
        members = _check_members(zf)
        manifest = _manifest(zf, members)
        _check_tables(manifest)
        _check_sums(zf, members, _check_listing(manifest, members))
    except BaseException:
        zf.close()
        raise
    return zf, manifest, members


# --- re-creating rows ------------------------------------------------------------------------------------


class _Remap:
    """Old id -> new id per table, and how portable values turn into the new organisation's."""

    def __init__(self, organisation_id: int) -> None:
        self.organisation_id = organisation_id
        self.ids: dict[str, dict[int, int]] = {}
        self.roots = store_roots()
        self.written: list[Path] = []

    def store_parts(self, store: str, parts: list[str]) -> list[str] | None:
        """A path below the old organisation's store folder, below the new one's (None: an orphan folder)."""
        owner = STORE_ID_FOLDERS.get(store)
        if owner and parts and parts[0].isdigit():
            new = self.ids.get(owner, {}).get(int(parts[0]))
            if new is None:
                return None
            return [str(new), *parts[1:]]
        return parts

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith(archive.STORE_PREFIX):
                store, _, rest = value[len(archive.STORE_PREFIX) :].partition("/")
                parts = _safe_name(rest) if rest else []
                if store in self.roots and parts is not None:
                    mapped = self.store_parts(store, parts)
                    if mapped is not None:
                        return str(org_path(self.roots[store], self.organisation_id, *mapped))
                return ""
            match = _VERSION_REF.fullmatch(value)
            if match and int(match[1]) in self.ids.get("registry.ModelVersion", {}):
                return f"version:{self.ids['registry.ModelVersion'][int(match[1])]}"
            return value
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value


def _needs_second_pass(value: Any) -> bool:
    """Paths and version references can only be rewritten once every table has its new ids."""
    text = json.dumps(value) if isinstance(value, list | dict) else value
    return isinstance(text, str) and (archive.STORE_PREFIX in text or "version:" in text)


def _foreign(field: models.Field, raw: Any, remap: _Remap, table: str) -> Any:
    target = label(field.related_model)
    if target == "tenancy.Organisation":
        return remap.organisation_id
    if raw is None:
        return None
    new = remap.ids.get(target, {}).get(raw) if isinstance(raw, int) else None
    if new is None and not field.null:
        raise _refuse(f"a row of {table} refers to a {target} the archive does not re-create.")
    return new


def _build(model, row: Any, remap: _Remap, table: str) -> tuple[int, models.Model, dict[str, Any]]:
    """An unsaved row of the new organisation, its old id, and the values set once all ids are known."""
    pk = model._meta.pk
    if not isinstance(row, dict) or not isinstance(row.get(pk.attname), int):
        raise _refuse(f"a row of {table} is not an object with an id.")
    fields = {f.attname: f for f in model._meta.concrete_fields}
    unknown = set(row) - set(fields)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise _refuse(f"rows of {table} have columns this server does not know ({names}).")
    values: dict[str, Any] = {}
    later: dict[str, Any] = {}
    for attname, field in fields.items():
        if field is pk:
            continue
        raw = row.get(attname)
        if field.is_relation:
            values[attname] = _foreign(field, raw, remap, table)
        elif field.name in SECRET_FIELDS or attname not in row:
            values[attname] = field.get_default() if field.has_default() else ("" if not field.null else None)
        elif field.unique and field.has_default():
            values[attname] = field.get_default()
        else:
            try:
                value = raw if isinstance(field, models.JSONField) else field.to_python(raw)
            except ValidationError:
                raise _refuse(f"a row of {table} has an invalid value for {field.name}.")
            if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                later[attname] = value  # bulk_create stamps these with the current time
            elif _needs_second_pass(value):
                later[attname] = value
            values[attname] = value
    return row[pk.attname], model(**values), later


def _table_rows(zf: zipfile.ZipFile, members: dict[str, zipfile.ZipInfo], table: str) -> Iterator[Any]:
    info = members.get(archive.rows_member(table))
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
        raise _refuse(f"a line of {table} is not JSON.")


def _insert(model, zf, members, remap: _Remap) -> list[tuple[models.Model, dict[str, Any]]]:
    table = label(model)
    built = [_build(model, row, remap, table) for row in _table_rows(zf, members, table)]
    if not built:
        return []
    if _singleton(model):
        rows_of(model, remap.organisation_id).order_by().delete()
    objs = [obj for _, obj, _ in built]
    model._base_manager.bulk_create(objs, batch_size=_BATCH)
    remap.ids[table] = {old: obj.pk for (old, _, _), obj in zip(built, objs, strict=True)}
    return [(obj, later) for _, obj, later in built if later]


def _second_pass(model, pending: list[tuple[models.Model, dict[str, Any]]], remap: _Remap) -> None:
    names: set[str] = set()
    for obj, later in pending:
        for attname, value in later.items():
            setattr(obj, attname, remap.value(value))
            names.add(attname)
    fields = [f.name for f in model._meta.concrete_fields if f.attname in names]  # never relations
    model._base_manager.bulk_update([obj for obj, _ in pending], fields, batch_size=_BATCH)


def _check_quota(organisation, before: dict[str, int]) -> None:
    """The stock meters the import added to (models, stored records...) must stay within the plan."""
    for meter in before:
        after = stock_count(organisation=organisation, meter=meter)
        if after <= before[meter]:
            continue
        subscription = billing.subscription_for(organisation=organisation)
        billing.quota_guard(subscription=subscription, meter=meter, period=None)
        limit = subscription.plan.limit_for(meter)
        if after > limit:
            raise billing.quota_refusal(
                meter=meter, limit=limit, used=before[meter], period=None, quantity=after - before[meter]
            )


# --- files -----------------------------------------------------------------------------------------------


def _write_files(zf, members, listed_files: list[str], remap: _Remap) -> int:
    written = 0
    for path in listed_files:
        _, store, *parts = path.split("/")
        mapped = remap.store_parts(store, parts)
        if mapped is None:
            continue  # a folder of a row the archive does not hold
        target = org_path(remap.roots[store], remap.organisation_id, *mapped)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise Conflict("A file of this organisation appeared while importing; nothing was imported.")
        remap.written.append(target)
        write_org_file(target, remap.organisation_id, _member_bytes(zf, members[path]))
        written += 1
    return written


def _remove_written(remap: _Remap) -> None:
    """Remove the files this import wrote, and the folders it left empty (nothing else was there)."""
    for path in remap.written:
        path.unlink(missing_ok=True)
    for folder in archive.store_folders(remap.organisation_id).values():
        for sub in sorted(folder.rglob("*"), reverse=True) if folder.is_dir() else []:
            if sub.is_dir() and not any(sub.iterdir()):
                sub.rmdir()


# --- the service -----------------------------------------------------------------------------------------


def organisation_import(*, organisation, actor, upload: IO[bytes]) -> dict[str, Any]:
    """Re-create an archive's organisation in ``organisation`` (which must hold no data yet)."""
    from core.tenancy.models import Organisation

    held = organisation_data(organisation=organisation)
    if held:
        raise Conflict(
            "Import into a new organisation: this one already holds data "
            f"({', '.join(held[:5])}); nothing was imported."
        )
    zf, manifest, members = archive_open(upload)
    remap = _Remap(organisation.pk)
    try:
        with zf:
            return _import(organisation, actor, zf, manifest, members, remap, Organisation)
    except BaseException:
        _remove_written(remap)
        raise


def _import(organisation, actor, zf, manifest, members, remap: _Remap, organisation_model) -> dict[str, Any]:
    tables = set(manifest["tables"])
    with transaction.atomic():
        organisation_model.objects.select_for_update().get(pk=organisation.pk)
        held = organisation_data(organisation=organisation)
        if held:
            raise Conflict(
                f"This organisation already holds data ({', '.join(held[:5])}); nothing was imported."
            )
        meters = [m for m in stock_meters() if m != "seats"]
        before = {m: stock_count(organisation=organisation, meter=m) for m in meters}
        pending = []
        try:
            with transaction.atomic():
                for model in imported_models():
                    if label(model) in tables:
                        pending.append((model, _insert(model, zf, members, remap)))
                for model, rows in pending:
                    if rows:
                        _second_pass(model, rows, remap)
        except (IntegrityError, DatabaseError) as exc:
            raise _refuse(f"its rows do not fit this server's tables ({type(exc).__name__}).")
        for product in products():
            if product.import_remap is not None:
                product.import_remap(organisation=organisation, ids=remap.ids)
        _check_quota(organisation, before)
        files = [p for p in members if p.startswith("files/")]
        written = _write_files(zf, members, sorted(files), remap)
        counts = {t: len(ids) for t, ids in remap.ids.items()}
        source = {k: manifest["organisation"].get(k) for k in ("id", "name")}
        audit_record(
            organisation=organisation,
            action=Action.ORG_IMPORT,
            actor=actor,
            target=f"archive of {source['name']}"[:200],
            details={"source": source, "rows": counts, "files": written, "made": manifest.get("created_at")},
        )
    return {
        "source": source,
        "made_at": manifest.get("created_at"),
        "rows": counts,
        "files": written,
        "not_imported": sorted(t for t in tables if t in NOT_IMPORTED),
    }
