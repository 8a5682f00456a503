"""Model artifacts on disk: the format, the atomic writer and the verified reader.

A version is one folder: ``model.safetensors`` (the merged encoder and head, or the head alone for method
"head", whose encoder is the base model, checked by hash), the encoder ``config.json`` and tokenizer files,
and ``manifest.json`` (base model identity and hash, task, label map, hyper-parameters, training stats, per-
file sha256, library versions, plus whatever the caller adds, e.g. metrics and a data fingerprint). Writes
go to a temp sibling that is fsynced and then renamed into place, so a crash never leaves a half-written
version.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from core.ml.errors import ArtifactError
from core.ml.lexical import LexicalModel
from core.ml.ood import OutOfScope
from core.ml.runtime import Runtime, base_model_identity, base_model_path

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from core.ml.classifier import TrainedClassifier
    from core.ml.modeling import TextClassifier

FORMAT = "trellis.text-classifier"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
LIBRARIES = ("torch", "transformers", "tokenizers", "peft", "safetensors", "numpy")
EMBEDDER_FORMAT = "trellis.text-embedder"  # core.ml.embedder's artifacts
EMBEDDER_RESERVED_KEYS = frozenset(
    {"format", "format_version", "task", "weights", "files", "base_model", "embedding"}
    | {"hyperparameters", "training", "libraries", "created_at"}
)
RESERVED_KEYS = frozenset(
    {"format", "format_version", "task", "weights", "files", "base_model", "labels", "label_map"}
    | {"hyperparameters", "training", "libraries", "created_at", "lexical", "ood", "calibration"}
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{name: package_version(name) for name in LIBRARIES}}


def _torch_side() -> tuple[ModuleType, ModuleType]:
    """The model family and safetensors' torch API, imported with the first save or load: this module
    stays torch-free (the web processes import it)."""
    import safetensors.torch  # torch: see the docstring

    from core.ml import modeling  # torch: see the docstring

    return modeling, safetensors.torch


def _write_weights(model: TrainedClassifier, folder: Path) -> str:
    save_file = _torch_side()[1].save_file
    state = model.model.state_dict()
    kind = "head" if model.config.method == "head" else "full"
    if kind == "head":
        state = {k: v for k, v in state.items() if k.startswith("head.")}
    else:
        model.model.encoder.config.save_pretrained(str(folder))
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(folder / WEIGHTS))
    model.tokenizer.save_pretrained(str(folder))
    if model.lexical is not None:
        model.lexical.save(folder)
    if model.ood is not None:
        model.ood.save(folder)
    return kind


def build_manifest(model: TrainedClassifier, kind: str, files: dict[str, str], extra: dict[str, Any]) -> dict:
    """The manifest dict; ``extra`` keys go at the top level and may not shadow the reserved ones."""
    clash = sorted(RESERVED_KEYS & set(extra))
    if clash:
        raise ArtifactError(f"extra_manifest may not set reserved keys: {', '.join(clash)}.")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": "text-classification",
        "weights": kind,
        "files": files,
        "base_model": model.base_model,
        "labels": list(model.labels),
        "label_map": {label: i for i, label in enumerate(model.labels)},
        "hyperparameters": model.config.to_dict(),
        "training": model.stats.to_dict(),
        "libraries": library_versions(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "lexical": None if model.lexical is None else {"blend_weight": model.blend_weight},
        "ood": None if model.ood is None else model.ood.manifest(),
        "calibration": None if model.temperature == 1.0 else {"temperature": model.temperature},
        **extra,
    }
    try:
        json.dumps(manifest, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"The manifest is not JSON-serialisable: {exc}.")
    return manifest


def _write_manifest(manifest: dict, folder: Path) -> None:
    write_manifest(manifest, folder)


def _write_all(model: TrainedClassifier, folder: Path, extra: dict[str, Any]) -> dict:
    kind = _write_weights(model, folder)
    manifest = build_manifest(model, kind, file_hashes(folder), extra)
    _write_manifest(manifest, folder)
    sync_folder(folder)
    return manifest


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every plain file directly in ``folder``, by name."""
    return {p.name: _sha256(p) for p in sorted(Path(folder).iterdir()) if p.is_file()}


def manifest_text(manifest: dict) -> str:
    """``manifest.json``'s text: sorted keys, no NaN."""
    return json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"


def write_manifest(manifest: dict, folder: Path) -> None:
    """Write ``manifest.json`` into ``folder``."""
    (Path(folder) / MANIFEST).write_text(manifest_text(manifest), encoding="utf-8")


def sync_folder(folder: Path) -> None:
    """fsync every file in ``folder`` and then the folder itself."""
    for path in Path(folder).iterdir():
        _fsync(path)
    _fsync(Path(folder))


def publish_folder(directory: Path, write: Callable[[Path], dict]) -> dict:
    """Run ``write(temp)`` on a temp sibling of ``directory`` and rename it into place; returns its result.

    ``directory`` must not exist (versions are immutable); on any failure the temp folder is removed.
    """
    directory = Path(directory)
    if directory.exists():
        raise ArtifactError(f"Artifact folder {directory.name} already exists; versions are immutable.")
    directory.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        result = write(temp)
        try:
            os.rename(temp, directory)  # atomic on one filesystem; fails if directory became non-empty
        except OSError as exc:
            raise ArtifactError(f"Could not publish artifact {directory.name}: {exc.strerror}.")
        _fsync(directory.parent)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return result


def _newest_mtime(folder: Path) -> float:
    times = [folder.stat().st_mtime]
    times += [p.stat().st_mtime for p in folder.rglob("*") if p.exists()]
    return max(times)


def sweep_temp_folders(root: Path, *, older_than_s: float) -> list[Path]:
    """Remove unpublished ``.<name>.tmp-*`` folders under ``root`` left by a process killed mid-save.

    A folder is removed only when nothing in it changed for ``older_than_s`` seconds (pick more than the
    longest job, so a save in progress is never touched). Returns the removed folders.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for folder in sorted(root.rglob(".*.tmp-*")):
        if folder.is_dir() and _newest_mtime(folder) < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def save_artifact(*, model: TrainedClassifier, directory: Path, extra_manifest: dict[str, Any]) -> dict:
    """Write ``model`` atomically as the new folder ``directory`` (must not exist); returns the manifest."""
    return publish_folder(Path(directory), lambda temp: _write_all(model, temp, extra_manifest))


def read_manifest(directory: Path, *, expected_format: str = FORMAT) -> dict:
    """Load and sanity-check ``manifest.json``; raises ``ArtifactError`` when missing or not ours."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"Cannot read the artifact manifest in {Path(directory).name}: {exc}.")
    if manifest.get("format") != expected_format or manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError("Unsupported artifact format.")
    return manifest


def verify_files(directory: Path, manifest: dict) -> None:
    """Check every file listed in the manifest against its sha256."""
    for name, expected in manifest["files"].items():
        path = Path(directory) / name
        if not path.is_file() or _sha256(path) != expected:
            raise ArtifactError(f"Artifact file {name} is missing or corrupted.")


def _encoder_for(directory: Path, manifest: dict, runtime: Runtime) -> Any:
    modeling = _torch_side()[0]
    if manifest["weights"] == "full":
        return modeling.encoder_from_config(Path(directory))
    identity = base_model_identity(runtime.base_model_path)
    if identity["sha256"] != manifest["base_model"]["sha256"]:
        raise ArtifactError(
            "This artifact needs a different base model than the one configured (hash mismatch)."
        )
    return modeling.load_encoder(base_model_path(runtime.base_model_path))


def load_model(*, directory: Path, runtime: Runtime) -> tuple[TextClassifier, PreTrainedTokenizerBase, dict]:
    """Rebuild the model and tokenizer of a saved version on CPU, verified against its manifest."""
    modeling, safetensors_torch = _torch_side()
    manifest = read_manifest(directory)
    verify_files(directory, manifest)
    model = modeling.TextClassifier(_encoder_for(directory, manifest, runtime), len(manifest["labels"]))
    state = safetensors_torch.load_file(str(Path(directory) / WEIGHTS))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or (manifest["weights"] == "full" and missing):
        raise ArtifactError("Artifact weights do not match the model architecture.")
    model.requires_grad_(False)
    model.eval()
    return model, modeling.load_tokenizer(Path(directory)), manifest


def load_lexical(*, directory: Path, manifest: dict) -> tuple[LexicalModel | None, float]:
    """The lexical member and the neural model's blend weight (None, 1.0 when the version has none)."""
    if not manifest.get("lexical"):
        return None, 1.0
    return LexicalModel.load(Path(directory)), float(manifest["lexical"]["blend_weight"])


def load_ood(*, directory: Path, manifest: dict) -> OutOfScope | None:
    """The version's out-of-scope model, or None for a version saved without one (older versions too)."""
    if not manifest.get("ood"):
        return None
    return OutOfScope.load(Path(directory), manifest["ood"])


def load_temperature(manifest: dict) -> float:
    """The version's calibration temperature (1.0 for a version saved without one, or before calibration
    existed)."""
    calibration = manifest.get("calibration") or {}
    temperature = float(calibration.get("temperature", 1.0))
    if not temperature > 0:
        raise ArtifactError("The artifact's calibration temperature must be positive.")
    return temperature
