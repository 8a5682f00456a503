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

import json
import re
from pathlib import Path
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, models, transaction

from core.billing import services as billing
from core.billing.meters import stock_count, stock_meters
from core.errors import Conflict
from core.privacy import archive
from core.privacy.audit import Action, audit_record
from core.privacy.ownership import (
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

_VERSION_REF = re.compile(r"^version:([0-9]{1,12})$")
_BATCH = 500


# --- what the new organisation already holds -------------------------------------------------------------


def _singleton(model: type[models.Model]) -> bool:
    """One row per organisation (settings such as the chat bot's, made on first visit): the archive's row
    replaces the new organisation's, and having one does not count as having data."""
    field = organisation_field(model) or ""
    if getattr(model._meta.get_field(field), "unique", False):
        return True
    return any(
        isinstance(c, models.UniqueConstraint) and list(c.fields) == [field] and c.condition is None
        for c in model._meta.constraints
    )


def imported_models() -> list[type[models.Model]]:
    return [
        m for m in owned_models() if label(m) not in NOT_IMPORTED and label(m) in archive.exportable_tables()
    ]


def organisation_data(*, organisation) -> list[str]:
    """What the organisation holds that an import would collide with: tables with rows, stores with files."""
    held = [label(m) for m in imported_models() if not _singleton(m) and rows_of(m, organisation.pk).exists()]
    for store, folder in archive.store_folders(organisation.pk).items():
        if folder.is_dir() and any(p.is_file() for p in folder.rglob("*")):
            held.append(f"files: {store}")
    return held


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
        if owner and parts and parts[0].isascii() and parts[0].isdigit():
            new = self.ids.get(owner, {}).get(int(parts[0]))
            if new is None:
                return None
            return [str(new), *parts[1:]]
        return parts

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            if value.startswith(archive.STORE_PREFIX):
                store, _, rest = value[len(archive.STORE_PREFIX) :].partition("/")
                parts = archive.safe_name(rest) if rest else []
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
    target = label(field.related_model)  # type: ignore[arg-type]  # a relation: never None
    if target == "tenancy.Organisation":
        return remap.organisation_id
    if raw is None:
        return None
    new = remap.ids.get(target, {}).get(raw) if isinstance(raw, int) else None
    if new is None and not field.null:
        raise archive.refuse(f"a row of {table} refers to a {target} the archive does not re-create.")
    return new


def _build(model, row: Any, remap: _Remap, table: str) -> tuple[int, models.Model, dict[str, Any]]:
    """An unsaved row of the new organisation, its old id, and the values set once all ids are known."""
    pk = model._meta.pk
    if not isinstance(row, dict) or not isinstance(row.get(pk.attname), int):
        raise archive.refuse(f"a row of {table} is not an object with an id.")
    fields = {f.attname: f for f in model._meta.concrete_fields}
    unknown = set(row) - set(fields)
    if unknown:
        names = ", ".join(sorted(unknown))
        raise archive.refuse(f"rows of {table} have columns this server does not know ({names}).")
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
            values[attname] = value = _plain_value(field, raw, remap, table)
            if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
                later[attname] = value  # bulk_create stamps these with the current time
            elif _needs_second_pass(value):
                later[attname] = value
    return row[pk.attname], model(**values), later


def _plain_value(field: models.Field, raw: Any, remap: _Remap, table: str) -> Any:
    """A column's value from the archive. A text naming a place on this server is refused: an export writes
    the organisation's store paths in portable form, so an absolute path (``/var/models/7/...``, another
    tenant's model) can only be a forged archive pointing a row at files that are not its own."""
    try:
        value = raw if isinstance(field, models.JSONField) else field.to_python(raw)
    except ValidationError:
        raise archive.refuse(f"a row of {table} has an invalid value for {field.name}.")
    if isinstance(value, str) and (
        any(value.startswith(str(root)) for root in remap.roots.values())
        or (field.name.endswith("path") and value and not value.startswith(archive.STORE_PREFIX))
    ):
        raise archive.refuse(f"a row of {table} names a file outside the archive ({field.name}).")
    return value


def _insert(model, zf, members, remap: _Remap) -> list[tuple[models.Model, dict[str, Any]]]:
    table = label(model)
    rows = list(archive.table_rows(zf, members, table))
    if not rows:
        return []
    if _singleton(model):
        rows_of(model, remap.organisation_id).order_by().delete()
    remap.ids[table] = {}
    pending: list[tuple[models.Model, dict[str, Any]]] = []
    for wave in _waves(model, rows):
        built = [_build(model, row, remap, table) for row in wave]
        objs = [obj for _, obj, _ in built]
        model._base_manager.bulk_create(objs, batch_size=_BATCH)
        remap.ids[table].update({old: obj.pk for (old, _, _), obj in zip(built, objs, strict=True)})
        pending += [(obj, later) for _, obj, later in built if later]
    return pending


def _waves(model, rows: list) -> list[list]:
    """The rows in the order a relation of the table to itself needs (a document's copies point at their
    original): first those that point at no row of the archive, then those that point at the first wave, and
    so on, so that each row's reference is known when it is built (and constraints that hold only for rows
    with no such reference, one original per text, hold at every insert). Most tables: one wave."""
    own = [f.attname for f in model._meta.concrete_fields if f.is_relation and f.related_model is model]
    pk = model._meta.pk.attname
    if not own:
        return [rows]
    present = {row.get(pk) for row in rows if isinstance(row, dict)}
    placed: set = set()
    waves: list[list] = []
    left = rows
    while left:
        ready = [
            row
            for row in left
            if not isinstance(row, dict)
            or all(row.get(a) is None or row.get(a) not in present or row.get(a) in placed for a in own)
        ]
        if not ready:  # a cycle: the references that remain cannot be kept
            ready = left
        waves.append(ready)
        placed.update(row.get(pk) for row in ready if isinstance(row, dict))
        taken = {id(row) for row in ready}
        left = [row for row in left if id(row) not in taken]
    return waves


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
        write_org_file(target, remap.organisation_id, archive.member_bytes(zf, members[path]))
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
    zf, manifest, members = archive.archive_open(upload)
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
            raise archive.refuse(f"its rows do not fit this server's tables ({type(exc).__name__}).")
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
