"""Files that belong to an organisation: every path under a store is built here and checked to stay inside it.

Stores (the model store, the dataset store, the exports folder) keep one folder per organisation, named by
its integer id. Callers pass the parts of a path below that folder, each already validated (a registered
product, a task slug, integer ids, a generated file name); ``org_path`` still resolves the result and
raises ``UnsafePath`` when it would leave the organisation's folder (``..``, an absolute part, a symlink
out), so one unchecked caller cannot reach another tenant's files or the server's.
"""

import re
from pathlib import Path

from django.conf import settings

from core.errors import InvalidInput

# A name the platform gave a downloadable file (``predictions-job12.csv``, ``usage-2026-11-job3.csv``).
EXPORT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,100}\.csv$")
# The organisation's whole-data archive (``core.privacy.export``): downloadable by owners only.
ARCHIVE_NAME = re.compile(r"^org-export-job[0-9]{1,12}\.zip$")


class UnsafePath(InvalidInput):
    """A path part would leave the organisation's folder. The message never names a server path."""

    def __init__(self) -> None:
        super().__init__("Invalid file or folder name.")


def org_path(root: Path | str, organisation_id: int, *parts: str | int) -> Path:
    """``root/<organisation_id>/<parts...>``, resolved, or ``UnsafePath`` if it leaves that folder."""
    if isinstance(organisation_id, bool) or not isinstance(organisation_id, int) or organisation_id <= 0:
        raise UnsafePath()
    base = (Path(root) / str(organisation_id)).resolve()
    texts = [str(p) for p in parts]
    if any(not t or "\x00" in t or t in (".", "..") or Path(t).is_absolute() for t in texts):
        raise UnsafePath()
    path = base.joinpath(*texts).resolve()
    if path != base and not path.is_relative_to(base):
        raise UnsafePath()
    return path


def export_path(organisation_id: int, name: str) -> Path:
    """A file a job wrote for download, in the organisation's exports folder."""
    if not isinstance(name, str) or not EXPORT_NAME.fullmatch(name):
        raise UnsafePath()
    return org_path(Path(settings.VAR_DIR) / "exports", organisation_id, name)


def archive_path(organisation_id: int, name: str) -> Path:
    """An organisation export archive, in the exports folder (not served by the generic job download)."""
    if not isinstance(name, str) or not ARCHIVE_NAME.fullmatch(name):
        raise UnsafePath()
    return org_path(Path(settings.VAR_DIR) / "exports", organisation_id, name)


def write_org_file(path: Path, organisation_id: int, data: bytes) -> None:
    """Write an organisation's upload (dataset rows, a batch input) or artifact file: encrypted with the
    organisation's key when ``TRELLIS_ENCRYPT_AT_REST`` is on (``core.privacy.crypto``)."""
    from core.privacy.crypto import encrypt_for

    path.write_bytes(encrypt_for(organisation_id, data))


def read_org_file(path: Path, organisation_id: int) -> bytes:
    """Read a file ``write_org_file`` wrote (or one written before encryption was turned on)."""
    from core.privacy.crypto import decrypt_for

    return decrypt_for(organisation_id, path.read_bytes())
