"""What the registry services share: the ML runtime settings and version numbering."""

import hashlib
import json
import os
from pathlib import Path

from django.conf import settings
from django.db.models import Max

from core.ml.artifact import MANIFEST, manifest_text, sweep_temp_folders
from core.ml.runtime import Runtime
from core.registry.models import ModelVersion, VersionStatus

SERVABLE = (VersionStatus.READY, VersionStatus.ACTIVE)
MAX_PREDICT_TEXTS = 256


def runtime(*, threads: int | None = None) -> Runtime:
    return Runtime(
        base_model_path=settings.ML_BASE_MODEL,
        device=settings.ML_DEVICE,
        threads=threads or settings.ML_TRAIN_THREADS,
        int8_kernel=settings.ML_INT8_KERNEL,
    )


def artifact_key(version: ModelVersion) -> str:
    """Names a version's loaded model in per-process caches. Ids alone are not enough: SQLite hands a
    rolled-back or deleted row's id out again, and the artifact folder is named after the ids, so a new
    model can arrive under an old model's id and path; the hashes of its files tell them apart."""
    files = json.dumps(version.manifest.get("files", {}), sort_keys=True)
    return f"{version.organisation_id}:{version.pk}:{hashlib.sha256(files.encode()).hexdigest()[:16]}"


def next_version(queryset) -> int:
    return (queryset.aggregate(v=Max("version"))["v"] or 0) + 1


def active_version(organisation, app: str, task: str) -> ModelVersion | None:
    return (
        ModelVersion.objects.for_org(organisation)
        .filter(app=app, task=task, status=VersionStatus.ACTIVE)
        .first()
    )


# Longer than the longest job (jobs.run's 6 h time limit), so a save in progress is never swept.
STALE_TEMP_AFTER_S = 7 * 3600


def store_sweep(*, older_than_s: float = STALE_TEMP_AFTER_S) -> list[str]:
    """Remove half-written artifact folders that a killed worker left in the model store."""
    return [str(p) for p in sweep_temp_folders(Path(settings.MODEL_STORE), older_than_s=older_than_s)]


def plaintext_model_dir(version: ModelVersion) -> Path:
    """Where the ML runtime loads a version from: its store folder, or (encrypted at rest) a decrypted copy
    private to this process (``core.privacy.crypto``)."""
    from core.privacy.crypto import plaintext_tree

    return plaintext_tree(Path(version.artifact_path), version.organisation_id, artifact_key(version))


def encrypt_model_dir(directory: Path, organisation_id: int) -> None:
    """Encrypt a freshly saved artifact folder in place when encryption at rest is on."""
    from core.privacy.crypto import encrypt_tree

    encrypt_tree(directory, organisation_id)


def artifact_text_form_record(*, directory: Path, organisation_id: int, name: str) -> dict:
    """Record in a stored artifact's manifest file that its model was trained on texts in the text form
    ``name`` (``core.ml.textforms``), for a version trained before forms were recorded; the manifest, which
    the caller stores on the version's row too. The file is replaced atomically, encrypted again if it was."""
    from core.privacy.crypto import decrypt_for, encrypt_for, is_encrypted

    path = Path(directory) / MANIFEST
    data = path.read_bytes()
    manifest = json.loads(decrypt_for(organisation_id, data))
    manifest["hyperparameters"]["text_form"] = name
    out = manifest_text(manifest).encode("utf-8")
    tmp = path.with_name(f".{MANIFEST}.form-tmp")
    tmp.write_bytes(encrypt_for(organisation_id, out) if is_encrypted(data) else out)
    os.replace(tmp, path)
    return manifest
