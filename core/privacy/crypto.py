"""Encryption at rest: uploads (dataset rows and reports, batch inputs) and model artifacts, per organisation.

Each organisation has a random 256-bit data key, stored wrapped (Fernet) by the master key from the
environment (``TRELLIS_MASTER_KEY``, a Fernet key); files are AES-GCM encrypted with it, the organisation id
as associated data (a file copied into another tenant's folder does not decrypt there). Writing encrypts only
when ``TRELLIS_ENCRYPT_AT_REST`` is on (off by default, so the embedded default runs with no key to keep);
reading recognises encrypted files by their header, so files written before it was turned on still read.

Model artifacts are encrypted file by file once training has saved them (``encrypt_model_dir``); the serving
process decrypts a version once into a private temporary folder (``plaintext_model_dir``: mode 0700, removed
when the process exits) because the ML runtime loads from a folder.
"""

import atexit
import hashlib
import os
import secrets
import shutil
import tempfile
import threading
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from core.errors import InvalidInput

MAGIC = b"TRLENC1\n"
_NONCE = 12
_keys: dict[int, bytes] = {}
_lock = threading.Lock()


def enabled() -> bool:
    return bool(getattr(settings, "TRELLIS_ENCRYPT_AT_REST", False))


def _master() -> Fernet:
    key = getattr(settings, "TRELLIS_MASTER_KEY", "")
    if not key:
        raise ImproperlyConfigured("TRELLIS_MASTER_KEY is not set: encrypted files cannot be used.")
    try:
        return Fernet(key)
    except ValueError:
        raise ImproperlyConfigured("TRELLIS_MASTER_KEY is not a Fernet key (32 url-safe base64 bytes).")


def organisation_key(organisation_id: int) -> bytes:
    """The organisation's data key, unwrapped (created on first use)."""
    from core.privacy.models import OrganisationKey

    with _lock:
        if organisation_id in _keys:
            return _keys[organisation_id]
    row = OrganisationKey.objects.filter(organisation_id=organisation_id).first()
    if row is None:
        try:
            with transaction.atomic():
                wrapped = _master().encrypt(secrets.token_bytes(32)).decode()
                row = OrganisationKey.objects.create(organisation_id=organisation_id, wrapped_key=wrapped)
        except IntegrityError:  # another process made it first
            row = OrganisationKey.objects.get(organisation_id=organisation_id)
    try:
        key = _master().decrypt(row.wrapped_key.encode())
    except InvalidToken:
        raise ImproperlyConfigured("TRELLIS_MASTER_KEY does not unwrap this organisation's key.")
    with _lock:
        _keys[organisation_id] = key
    return key


def forget_key(organisation_id: int) -> None:
    with _lock:
        _keys.pop(organisation_id, None)


def is_encrypted(data: bytes) -> bool:
    return data.startswith(MAGIC)


def encrypt_for(organisation_id: int, data: bytes) -> bytes:
    """``data`` encrypted with the organisation's key when encryption at rest is on; else unchanged."""
    if not enabled() or is_encrypted(data):
        return data
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(organisation_key(organisation_id)).encrypt(nonce, data, str(organisation_id).encode())
    return MAGIC + nonce + sealed


def decrypt_for(organisation_id: int, data: bytes) -> bytes:
    if not is_encrypted(data):
        return data
    body = data[len(MAGIC) :]
    try:
        return AESGCM(organisation_key(organisation_id)).decrypt(
            body[:_NONCE], body[_NONCE:], str(organisation_id).encode()
        )
    except InvalidTag:
        raise InvalidInput("A stored file does not decrypt with this organisation's key.")


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


def encrypt_tree(directory: Path, organisation_id: int) -> int:
    """Encrypt every file under ``directory`` in place (each replaced atomically). Returns how many."""
    if not enabled():
        return 0
    count = 0
    for path in _files(directory):
        data = path.read_bytes()
        if is_encrypted(data):
            continue
        tmp = path.with_name(f".{path.name}.enc-tmp")
        tmp.write_bytes(encrypt_for(organisation_id, data))
        os.replace(tmp, path)
        count += 1
    return count


def tree_is_encrypted(directory: Path) -> bool:
    for path in _files(directory):
        with path.open("rb") as handle:
            if handle.read(len(MAGIC)) == MAGIC:
                return True
    return False


_plain_root: Path | None = None
_plain: dict[str, Path] = {}


def _plaintext_root() -> Path:
    global _plain_root
    if _plain_root is None:
        _plain_root = Path(tempfile.mkdtemp(prefix=f"trellis-plain-{os.getpid()}-"))  # mode 0700
        atexit.register(shutil.rmtree, _plain_root, True)
    return _plain_root


def plaintext_tree(directory: Path, organisation_id: int, cache_key: str) -> Path:
    """``directory`` itself when nothing in it is encrypted; else a decrypted copy private to this process,
    made once per ``cache_key`` (the version's artifact key)."""
    with _lock:
        if cache_key in _plain and _plain[cache_key].is_dir():
            return _plain[cache_key]
    if not directory.is_dir() or not tree_is_encrypted(directory):
        return directory
    target = _plaintext_root() / hashlib.sha256(cache_key.encode()).hexdigest()[:24]
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for path in _files(directory):
        out = staging / path.relative_to(directory)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(decrypt_for(organisation_id, path.read_bytes()))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)
    with _lock:
        _plain[cache_key] = target
    return target


def forget_plaintext(prefix: str) -> None:
    """Drop this process's decrypted copies whose cache key starts with ``prefix`` (``"<org id>:"``)."""
    with _lock:
        for key in [k for k in _plain if k.startswith(prefix)]:
            shutil.rmtree(_plain.pop(key), ignore_errors=True)
