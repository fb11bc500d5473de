"""App bundles: gzip tars of an app folder, unpacked safely into content-addressed directories.

An upload is untrusted: every entry is checked (no absolute paths, no "..", no links out, no
devices, bounded count and size) before ``tarfile``'s "data" filter extracts it, and the tree
appears under ``root/<digest>/`` only once it is complete and on disk.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from courtyard.catalog._errors import BundleInvalid

MANIFEST_FILE = "courtyard.yaml"
MAX_ENTRIES = 10_000
MAX_UNPACKED_BYTES = 200 * 2**20
_DIGEST = re.compile(r"[0-9a-f]{64}")
_STAGING_PREFIX = ".incoming-"
# Staging directories older than this are leftovers of a crash, not an ingest in progress.
_STALE_STAGING_SECONDS = 3600.0


@dataclass(frozen=True)
class Bundle:
    """An unpacked bundle: its content digest, where it lives and its ``courtyard.yaml`` text."""

    digest: str
    path: Path
    manifest_text: str


class BundleStore:
    """Unpacked bundles under ``root``, one directory per content digest."""

    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def root(self) -> Path:
        """The directory holding one sub-directory per bundle digest."""
        return self._root

    def ingest(self, archive: Path | bytes) -> Bundle:
        """Check, unpack and store a gzip tar; the same content always gives the same digest.

        Raises :class:`BundleInvalid` naming the first unsafe or missing thing found.
        """
        self._root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=self._root))
        try:
            tree = staging / "tree"
            tree.mkdir()
            _extract(archive, tree)
            manifest_text = _read_manifest(tree)
            digest = tree_digest(tree)
            target = self._root / digest
            if not target.is_dir():
                _sync_tree(tree)
                try:
                    tree.rename(target)  # atomic: readers see no bundle or a whole one
                except OSError:
                    if not target.is_dir():  # not a concurrent ingest of the same content
                        raise
                _sync_directory(self._root)
            return Bundle(digest, target, manifest_text)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def path(self, digest: str) -> Path:
        """Where the bundle with ``digest`` is unpacked; raises BundleInvalid if there is none."""
        if _DIGEST.fullmatch(digest) is None:
            raise BundleInvalid(f"not a bundle digest (64 lower-case hex digits): {digest!r}")
        path = self._root / digest
        if not path.is_dir():
            raise BundleInvalid(f"no bundle with digest {digest}")
        return path

    def remove_unused(self, keep: set[str]) -> list[str]:
        """Delete every bundle whose digest is not in ``keep`` (and stale staging directories).

        Returns the digests removed, sorted.
        """
        removed: list[str] = []
        if not self._root.is_dir():
            return removed
        for entry in sorted(self._root.iterdir()):
            if _DIGEST.fullmatch(entry.name) and entry.name not in keep:
                shutil.rmtree(entry)
                removed.append(entry.name)
            elif entry.name.startswith(_STAGING_PREFIX) and _is_stale(entry):
                shutil.rmtree(entry, ignore_errors=True)
        return removed


def tree_digest(tree: Path) -> str:
    """sha256 over sorted (relative path, executable bit, file sha256), plus symlink targets.

    Only content counts: tar order, timestamps and owners do not change the digest.
    """
    hasher = hashlib.sha256(b"courtyard-bundle-v1\0")
    real_root = os.path.realpath(tree)
    for relative, path in _entries(tree):
        info = path.lstat()
        name = _utf8(relative)
        if stat.S_ISLNK(info.st_mode):
            if not _inside(os.path.realpath(path), real_root):
                raise BundleInvalid(f"{relative}: link points outside the bundle")
            hasher.update(b"L\0" + name + b"\0" + _utf8(os.readlink(path)) + b"\0")
        else:
            executable = b"x" if info.st_mode & stat.S_IXUSR else b"-"
            hasher.update(b"F\0" + name + b"\0" + executable + b"\0" + _file_sha256(path) + b"\0")
    return hasher.hexdigest()


def _entries(tree: Path) -> Iterator[tuple[str, Path]]:
    """Files and symlinks under ``tree`` as (posix relative path, path), sorted by path."""
    found: list[tuple[str, Path]] = []
    for directory, subdirectories, files in os.walk(tree):
        base = Path(directory)
        for name in [*files, *(d for d in subdirectories if (base / d).is_symlink())]:
            path = base / name
            found.append((path.relative_to(tree).as_posix(), path))
    return iter(sorted(found))


def _extract(archive: Path | bytes, tree: Path) -> None:
    try:
        source = io.BytesIO(archive) if isinstance(archive, bytes) else archive.open("rb")
        with source, tarfile.open(fileobj=source, mode="r:gz") as tar:
            members = _checked_members(tar)
            tar.extractall(tree, members=members, filter="data")
    except tarfile.FilterError as exc:
        raise BundleInvalid(f"unsafe entry: {exc}") from exc
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BundleInvalid(f"not a readable gzip-compressed tar archive ({exc})") from exc


def _checked_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members: list[tarfile.TarInfo] = []
    unpacked = 0
    for member in tar:
        if len(members) >= MAX_ENTRIES:
            raise BundleInvalid(f"more than {MAX_ENTRIES} entries")
        name = member.name
        parts = PurePosixPath(name).parts
        if name.startswith(("/", "\\")):
            raise BundleInvalid(f"{name}: absolute path")
        if ".." in parts or "\\" in name:
            raise BundleInvalid(f"{name}: path leaves the bundle ('..' or '\\')")
        if member.isfile() and member.issparse():
            raise BundleInvalid(f"{name}: sparse files are not supported")
        if member.issym() or member.islnk():
            _check_link(member)
        elif member.ischr() or member.isblk() or member.isfifo():
            raise BundleInvalid(f"{name}: device or special file")
        elif not (member.isfile() or member.isdir()):
            raise BundleInvalid(f"{name}: unsupported entry type")
        if member.isfile():
            unpacked += member.size
            if unpacked > MAX_UNPACKED_BYTES:
                raise BundleInvalid(f"more than {MAX_UNPACKED_BYTES // 2**20} MiB unpacked")
        if set(parts) - {"."}:
            members.append(member)
    return members


def _check_link(member: tarfile.TarInfo) -> None:
    target = member.linkname
    if target.startswith(("/", "\\")):
        raise BundleInvalid(f"{member.name}: link to an absolute path ({target})")
    # Symlinks resolve from their own directory, hard links from the archive root.
    base = PurePosixPath(member.name).parent if member.issym() else PurePosixPath()
    depth = 0
    for part in (base / target).parts:
        depth += -1 if part == ".." else 0 if part == "." else 1
        if depth < 0:
            raise BundleInvalid(f"{member.name}: link points outside the bundle ({target})")


def _read_manifest(tree: Path) -> str:
    path = tree / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        raise BundleInvalid(f"no {MANIFEST_FILE} at the top level of the bundle")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BundleInvalid(f"{MANIFEST_FILE} is not UTF-8 text") from exc


def _file_sha256(path: Path) -> bytes:
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(2**20), b""):
            hasher.update(chunk)
    return hasher.hexdigest().encode()


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BundleInvalid(f"file name is not UTF-8: {text!r}") from exc


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _sync_tree(tree: Path) -> None:
    """fsync every file, then every directory, so a rename publishes data already on disk."""
    directories = []
    for directory, _, files in os.walk(tree):
        directories.append(directory)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                descriptor = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(descriptor)
                finally:
                    os.close(descriptor)
    for directory in directories:
        _sync_directory(Path(directory))


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _is_stale(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > _STALE_STAGING_SECONDS
    except OSError:
        return False
