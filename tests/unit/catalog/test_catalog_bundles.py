"""Bundles: safe unpacking of untrusted tars, content digests, and the client-side packer."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from courtyard.catalog import BundleInvalid, BundleStore, make_bundle

MANIFEST = b"apiVersion: courtyard.dev/v1alpha1\nkind: Application\n"

Entry = tuple[str, bytes | None, dict[str, object]]  # name, content (None: no data), TarInfo attrs


def tar_gz(entries: list[Entry], *, mtime: int = 0) -> bytes:
    """A gzip tar built entry by entry: (name, content or None, TarInfo attributes)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=mtime) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, content, attributes in entries:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.mode = 0o644
            for key, value in attributes.items():
                setattr(info, key, value)
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return buffer.getvalue()


def app_files(**extra: bytes) -> list[Entry]:
    files = {"courtyard.yaml": MANIFEST, "app.py": b"print('hi')\n", **extra}
    return [(name, content, {}) for name, content in files.items()]


@pytest.fixture
def store(tmp_path: Path) -> BundleStore:
    return BundleStore(tmp_path / "bundles")


def test_ingest_unpacks_into_a_digest_directory(store: BundleStore) -> None:
    bundle = store.ingest(tar_gz(app_files()))
    assert len(bundle.digest) == 64
    assert bundle.path == store.root / bundle.digest
    assert (bundle.path / "app.py").read_bytes() == b"print('hi')\n"
    assert bundle.manifest_text == MANIFEST.decode()
    assert store.path(bundle.digest) == bundle.path
    assert [p.name for p in store.root.iterdir()] == [bundle.digest]  # no staging left


def test_digest_ignores_order_mtime_and_owners(store: BundleStore, tmp_path: Path) -> None:
    entries = app_files(**{"lib/util.py": b"x = 1\n"})
    first = store.ingest(tar_gz(entries, mtime=0))
    shuffled = [(n, c, {"uid": 1000, "uname": "dana"}) for n, c, _ in reversed(entries)]
    second = BundleStore(tmp_path / "other").ingest(tar_gz(shuffled, mtime=1_700_000_000))
    assert first.digest == second.digest


def test_digest_changes_with_content_names_and_executable_bit(store: BundleStore) -> None:
    base = store.ingest(tar_gz(app_files())).digest
    changed = store.ingest(tar_gz(app_files(**{"app.py": b"print('bye')\n"}))).digest
    renamed = store.ingest(
        tar_gz([("courtyard.yaml", MANIFEST, {}), ("main.py", b"print('hi')\n", {})])
    ).digest
    executable = store.ingest(
        tar_gz([("courtyard.yaml", MANIFEST, {}), ("app.py", b"print('hi')\n", {"mode": 0o755})])
    ).digest
    assert len({base, changed, renamed, executable}) == 4
    assert os.stat(store.path(executable) / "app.py").st_mode & stat.S_IXUSR


def test_same_content_twice_reuses_the_directory(store: BundleStore) -> None:
    first = store.ingest(tar_gz(app_files()))
    marker = first.path / "app.py"
    before = marker.stat().st_ino
    second = store.ingest(tar_gz(app_files()))
    assert second == first
    assert marker.stat().st_ino == before


def test_ingest_from_a_file(store: BundleStore, tmp_path: Path) -> None:
    archive = tmp_path / "upload.tar.gz"
    archive.write_bytes(tar_gz(app_files()))
    assert store.ingest(archive).digest == store.ingest(tar_gz(app_files())).digest


def test_leading_dot_slash_is_the_top_level(store: BundleStore) -> None:
    bundle = store.ingest(tar_gz([("./", None, {"type": tarfile.DIRTYPE, "mode": 0o755}),
                                  ("./courtyard.yaml", MANIFEST, {})]))  # fmt: skip
    assert bundle.manifest_text == MANIFEST.decode()


def test_links_inside_the_bundle_are_kept(store: BundleStore) -> None:
    entries: list[Entry] = [
        *app_files(),
        ("static/main.py", None, {"type": tarfile.SYMTYPE, "linkname": "../app.py"}),
    ]
    bundle = store.ingest(tar_gz(entries))
    assert (bundle.path / "static" / "main.py").read_bytes() == b"print('hi')\n"


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        (("../evil.py", b"x", {}), "leaves the bundle"),
        (("lib/../../evil.py", b"x", {}), "leaves the bundle"),
        (("/etc/cron.d/evil", b"x", {}), "absolute path"),
        (("escape", None, {"type": tarfile.SYMTYPE, "linkname": "../../outside"}), "outside"),
        (("escape", None, {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}), "absolute"),
        (("hard", None, {"type": tarfile.LNKTYPE, "linkname": "../outside"}), "outside"),
        (("null", None, {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}), "device"),
        (("disk", None, {"type": tarfile.BLKTYPE}), "device"),
        (("pipe", None, {"type": tarfile.FIFOTYPE}), "device"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-absolute",
         "hardlink-out", "char-device", "block-device", "fifo"],
)  # fmt: skip
def test_unsafe_entries_are_refused(
    store: BundleStore,
    tmp_path: Path,
    entry: tuple[str, bytes | None, dict[str, object]],
    words: str,
) -> None:
    with pytest.raises(BundleInvalid, match=words):
        store.ingest(tar_gz([*app_files(), entry]))
    assert not (tmp_path / "evil.py").exists()
    assert list(store.root.iterdir()) == []


def test_symlink_chain_out_of_the_bundle_is_refused(store: BundleStore) -> None:
    entries: list[Entry] = [
        *app_files(),
        ("a/up", None, {"type": tarfile.SYMTYPE, "linkname": ".."}),
        ("a/up2", None, {"type": tarfile.SYMTYPE, "linkname": "up/.."}),
    ]
    with pytest.raises(BundleInvalid):
        store.ingest(tar_gz(entries))


def test_too_many_files_are_refused(store: BundleStore) -> None:
    entries = [*app_files(), *((f"f/{i}", b"", {}) for i in range(10_000))]
    with pytest.raises(BundleInvalid, match="more than 10000 entries"):
        store.ingest(tar_gz(entries))


def test_too_many_bytes_are_refused(store: BundleStore) -> None:
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb") as compressed,
        tarfile.open(fileobj=compressed, mode="w") as tar,
    ):
        for name, content, _ in app_files():
            info = tarfile.TarInfo(name)
            info.size = len(content or b"")
            tar.addfile(info, io.BytesIO(content or b""))
        info = tarfile.TarInfo("big.bin")
        info.size = 201 * 2**20
        tar.addfile(info, _Zeros(info.size))
    with pytest.raises(BundleInvalid, match="200 MiB"):
        store.ingest(buffer.getvalue())


class _Zeros(io.RawIOBase):
    """A readable stream of ``size`` zero bytes, without holding them in memory."""

    def __init__(self, size: int) -> None:
        self._left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        count = min(len(buffer), self._left)
        buffer[:count] = bytes(count)
        self._left -= count
        return count


def test_missing_manifest_is_refused(store: BundleStore) -> None:
    with pytest.raises(BundleInvalid, match=r"no courtyard\.yaml at the top level"):
        store.ingest(tar_gz([("app/courtyard.yaml", MANIFEST, {})]))


def test_manifest_as_a_link_is_refused(store: BundleStore) -> None:
    entries: list[Entry] = [
        ("real.yaml", MANIFEST, {}),
        ("courtyard.yaml", None, {"type": tarfile.SYMTYPE, "linkname": "real.yaml"}),
    ]
    with pytest.raises(BundleInvalid, match=r"no courtyard\.yaml"):
        store.ingest(tar_gz(entries))


@pytest.mark.parametrize("data", [b"", b"not a tar", gzip.compress(b"not a tar either")])
def test_garbage_is_refused(store: BundleStore, data: bytes) -> None:
    with pytest.raises(BundleInvalid, match="gzip-compressed tar"):
        store.ingest(data)


def test_truncated_archive_is_refused(store: BundleStore) -> None:
    data = tar_gz(app_files(**{"data.bin": os.urandom(100_000)}))
    with pytest.raises(BundleInvalid):
        store.ingest(data[: len(data) // 2])


def test_path_of_unknown_or_malformed_digest(store: BundleStore) -> None:
    with pytest.raises(BundleInvalid, match="no bundle"):
        store.path("0" * 64)
    with pytest.raises(BundleInvalid, match="not a bundle digest"):
        store.path("../../etc")


def test_remove_unused_keeps_only_what_is_asked(store: BundleStore) -> None:
    one = store.ingest(tar_gz(app_files()))
    two = store.ingest(tar_gz(app_files(**{"app.py": b"2"})))
    (store.root / "notes.txt").write_text("not a bundle")
    assert store.remove_unused({one.digest}) == [two.digest]
    assert sorted(p.name for p in store.root.iterdir()) == sorted([one.digest, "notes.txt"])
    assert store.remove_unused(set()) == [one.digest]


def test_make_bundle_round_trips_and_skips_clutter(store: BundleStore, tmp_path: Path) -> None:
    folder = tmp_path / "app"
    (folder / "src").mkdir(parents=True)
    (folder / "courtyard.yaml").write_bytes(MANIFEST)
    (folder / "src" / "main.py").write_text("print(1)\n")
    run = folder / "run.sh"
    run.write_text("#!/bin/sh\n")
    run.chmod(0o755)
    (folder / "current").symlink_to("src/main.py")
    for clutter in (
        ".git",
        "__pycache__",
        ".venv",
        "node_modules",
        ".courtyard",
        "src/__pycache__",
    ):
        (folder / clutter).mkdir(parents=True)
        (folder / clutter / "junk").write_text("junk")
    archive = make_bundle(folder)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == ["courtyard.yaml", "current", "run.sh", "src/main.py"]
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members.values())
    assert members["run.sh"].mode == 0o755 and members["src/main.py"].mode == 0o644
    bundle = store.ingest(archive)
    assert (bundle.path / "current").read_text() == "print(1)\n"
    assert os.access(bundle.path / "run.sh", os.X_OK)
    # Reproducible: packing again gives the same bytes.
    assert make_bundle(folder) == archive


def test_make_bundle_needs_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(BundleInvalid, match=r"no courtyard\.yaml"):
        make_bundle(tmp_path)
