"""The client side of bundles: pack an app folder into the gzip tar ``BundleStore`` accepts.

The archive is reproducible (sorted, zero timestamps and owners), and skips what never
belongs in a deployment: VCS data, caches, virtualenvs, node_modules and Courtyard's data dir.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

from courtyard.catalog._bundles import MANIFEST_FILE, MAX_ENTRIES, MAX_UNPACKED_BYTES
from courtyard.catalog._errors import BundleInvalid

SKIPPED = frozenset({".git", "__pycache__", ".venv", "node_modules", ".courtyard"})


def make_bundle(folder: Path) -> bytes:
    """A gzip tar of ``folder`` (relative paths), ready for :meth:`BundleStore.ingest`.

    Raises :class:`BundleInvalid` when the folder has no ``courtyard.yaml`` or is over the
    limits the store enforces.
    """
    if not (folder / MANIFEST_FILE).is_file():
        raise BundleInvalid(f"{folder} has no {MANIFEST_FILE}")
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        size = 0
        for count, path in enumerate(_files(folder), start=1):
            info = tar.gettarinfo(str(path), arcname=path.relative_to(folder).as_posix())
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            size += info.size if info.isfile() else 0
            if count > MAX_ENTRIES or size > MAX_UNPACKED_BYTES:
                raise BundleInvalid(
                    f"{folder} has more than {MAX_ENTRIES} files or "
                    f"{MAX_UNPACKED_BYTES // 2**20} MiB"
                )
            if info.issym():
                tar.addfile(info)
            else:
                info.mode = 0o755 if info.mode & stat.S_IXUSR else 0o644
                with path.open("rb") as file:
                    tar.addfile(info, file)
    return buffer.getvalue()


def _files(folder: Path) -> list[Path]:
    """Regular files and symlinks under ``folder``, sorted, skipping :data:`SKIPPED` names."""
    found: list[Path] = []
    for directory, subdirectories, files in os.walk(folder):
        base = Path(directory)
        subdirectories[:] = [name for name in subdirectories if name not in SKIPPED]
        for name in [*files, *(d for d in subdirectories if (base / d).is_symlink())]:
            path = base / name
            if name in SKIPPED:
                continue
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
                found.append(path)
    return sorted(found, key=lambda path: path.relative_to(folder).as_posix())
