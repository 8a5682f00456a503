"""The organisation's export: everything it owns as one archive (``core.privacy.archive``), made by a job.

``organisation_export_start`` queues the job (kind ``organisation.export``, ``default`` queue) and writes the
audit line in the same transaction; the handler writes the archive to the organisation's exports folder as
``org-export-job<id>.zip`` (a ``.partial`` file until it is complete), sealed with the organisation's key when
encryption at rest is on (then the zip is built in memory, so no plaintext copy reaches the disk: the worker
needs memory for one archive). Owners list and download archives (people only: ``org.privacy``). An archive is
kept ``EXPORT_ARCHIVE_DAYS`` days (7 by default) after its job finished; ``exports_sweep`` (beat, hourly)
removes older ones, and a download after that answers that the archive expired.
"""

import hashlib
import io
import json
import os
import zipfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from core.errors import NotFound
from core.jobs import services as jobs
from core.jobs.models import TrainingJob
from core.privacy import archive
from core.privacy.audit import Action, audit_record
from core.privacy.crypto import MAGIC, is_encrypted
from core.privacy.crypto import enabled as crypto_enabled
from core.privacy.ownership import NOT_EXPORTED, label, owned_models, rows_of, store_roots
from core.products import products
from core.storage import ARCHIVE_NAME, UnsafePath, archive_path, read_org_file, write_org_file

KIND = "organisation.export"
_CHUNK = 1 << 20


def archive_days() -> int:
    return int(getattr(settings, "EXPORT_ARCHIVE_DAYS", 7))


def organisation_export_start(*, organisation, actor) -> TrainingJob:
    """Queue an export of everything the organisation owns; the audit line commits with the job."""
    with transaction.atomic():
        job = jobs.job_create(organisation=organisation, kind=KIND, created_by=actor)
        audit_record(organisation=organisation, action=Action.ORG_EXPORT, actor=actor, target=f"job:{job.pk}")
    return job


def _plaintext(path: Path, organisation_id: int) -> tuple[bytes, str]:
    data = read_org_file(path, organisation_id)
    return data, hashlib.sha256(data).hexdigest()


def _write_rows(zf: zipfile.ZipFile, organisation_id: int, paths: archive.PathRewriter, reporter) -> dict:
    counts: dict[str, int] = {}
    entries = []
    models = [m for m in owned_models() if label(m) not in NOT_EXPORTED]
    for n, model in enumerate(models, start=1):
        name, fields, count = archive.rows_member(label(model)), archive.exported_fields(model), 0
        with zf.open(name, "w", force_zip64=True) as out:
            sha = hashlib.sha256()
            for obj in rows_of(model, organisation_id).iterator(chunk_size=500):
                line = (archive.encode_row(obj, fields, paths) + "\n").encode()
                out.write(line)
                sha.update(line)
                count += 1
            digest = sha.hexdigest()
        counts[label(model)] = count
        entries.append({"path": name, "sha256": digest})
        reporter.progress(0.5 * n / len(models), f"{label(model)}: {count} rows")
    return {"rows": counts, "tables": [label(m) for m in models], "row_files": entries}


def _org_files(organisation_id: int) -> list[tuple[str, Path]]:
    """(archive member, path) of every file in the organisation's exported stores; hidden names (folders
    being written, temporary files) are left out."""
    out = []
    for store, folder in archive.store_folders(organisation_id).items():
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder)
            if path.is_file() and not path.is_symlink() and not any(p.startswith(".") for p in rel.parts):
                out.append((f"files/{store}/{rel.as_posix()}", path))
    return out


def _write_files(zf: zipfile.ZipFile, organisation_id: int, reporter) -> list[dict[str, Any]]:
    files = _org_files(organisation_id)
    entries = []
    for n, (member, path) in enumerate(files, start=1):
        data, digest = _plaintext(path, organisation_id)  # plaintext: decrypted when sealed at rest
        zf.writestr(member, data)
        entries.append({"path": member, "size": len(data), "sha256": digest})
        reporter.progress(0.5 + 0.45 * n / len(files), f"{n} of {len(files)} files")
    return entries


def organisation_export(job, reporter) -> dict[str, Any]:
    """The job's handler: write the archive (a ``.partial`` file until it is whole, then renamed). With
    encryption at rest on, the zip is built in memory and only its sealed form touches the disk."""
    org = job.organisation
    name = f"org-export-job{job.pk}.zip"
    final = archive_path(org.pk, name)
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{name}.partial")
    paths = archive.PathRewriter(archive.store_folders(org.pk))
    target: Path | io.BytesIO = io.BytesIO() if crypto_enabled() else partial
    try:
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
            rows = _write_rows(zf, org.pk, paths, reporter)
            files = _write_files(zf, org.pk, reporter)
            zf.writestr(
                archive.MANIFEST, json.dumps(_manifest(org, rows, files), indent=1, ensure_ascii=False)
            )
        if isinstance(target, io.BytesIO):
            write_org_file(partial, org.pk, target.getvalue())
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    reporter.progress(1.0, f"{sum(rows['rows'].values())} rows, {len(files)} files", force=True)
    return {
        "archive": name,
        "bytes": final.stat().st_size,
        "rows": sum(rows["rows"].values()),
        "files": len(files),
        "tables": {k: v for k, v in rows["rows"].items() if v},
    }


def _manifest(org, rows: dict[str, Any], files: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": archive.FORMAT,
        "version": archive.VERSION,
        "organisation": {"id": org.pk, "name": org.name, "slug": org.slug},
        "created_at": timezone.now().isoformat(),
        "apps": sorted({m.split(".")[0] for m in rows["tables"]} | {p.name for p in products()}),
        "tables": rows["tables"],
        "rows": rows["rows"],
        "members": rows["row_files"] + files,
    }


def export_list(*, organisation) -> QuerySet[TrainingJob]:
    return TrainingJob.objects.for_org(organisation).filter(kind=KIND).order_by("-created_at", "-id")


def export_expires_at(job: TrainingJob) -> datetime | None:
    return job.finished_at + timedelta(days=archive_days()) if job.finished_at else None


def export_archive_file(job: TrainingJob) -> Path | None:
    """The job's archive on disk, if it finished and has not expired."""
    name = (job.result or {}).get("archive") if job.status == "succeeded" else None
    if not name:
        return None
    try:
        path = archive_path(job.organisation_id, name)
    except UnsafePath:
        return None
    return path if path.is_file() else None


def export_download(*, organisation, job_id: int) -> tuple[str, bytes | Path]:
    """The archive's file name and its plaintext (bytes when it is sealed at rest, else its path)."""
    job = export_list(organisation=organisation).filter(pk=job_id).first()
    if job is None:
        raise NotFound("No such export.")
    path = export_archive_file(job)
    if path is None:
        if job.status != "succeeded":
            raise NotFound(f"This export is {job.status}; its archive can be downloaded once it succeeded.")
        raise NotFound(
            f"This export's archive expired (archives are kept {archive_days()} days); start another."
        )
    with path.open("rb") as handle:
        sealed = is_encrypted(handle.read(len(MAGIC)))
    return path.name, read_org_file(path, organisation.pk) if sealed else path


def exports_sweep(*, now: datetime | None = None) -> int:
    """Remove archives older than ``EXPORT_ARCHIVE_DAYS`` (and partial ones a killed worker left)."""
    cutoff = (now or timezone.now()).timestamp() - archive_days() * 86400
    root = store_roots()["exports"]
    removed = 0
    for path in root.glob("*/*.zip*") if root.is_dir() else []:
        plain = path.name.lstrip(".").removesuffix(".partial")
        if ARCHIVE_NAME.fullmatch(plain) and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
