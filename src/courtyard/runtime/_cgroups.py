"""CPU and memory limits through a delegated cgroup v2 subtree, when this node has one.

Only cgroup v2 is used (cgroups(7), "Cgroups version 2"): the node needs a writable cgroup of
its own with the ``cpu`` and ``memory`` controllers delegated. Each instance gets
``<own cgroup>/courtyard/<instance-id>`` with ``memory.max`` and ``cpu.max``. Anything missing
is reported as a reason, never raised: an instance always starts, limits or not.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("courtyard.runtime")

CPU_PERIOD_US = 100_000  # cpu.max period; the kernel's default


@dataclass(frozen=True)
class CgroupSlot:
    """The cgroup prepared for one instance."""

    path: Path

    def join(self, pid: int) -> str | None:
        """Move ``pid`` into this cgroup; a reason when that fails."""
        try:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")
        except OSError as exc:
            return f"cannot move pid {pid} into {self.path}: {exc.strerror or exc}"
        return None

    def remove(self) -> None:
        """Remove the (empty) cgroup; left alone when the kernel refuses."""
        with contextlib.suppress(OSError):
            self.path.rmdir()


class CgroupV2:
    """Finds and prepares the delegated subtree; the answer of the first look is kept."""

    def __init__(
        self,
        root: Path = Path("/sys/fs/cgroup"),
        *,
        group: str = "courtyard",
        self_cgroup: Path = Path("/proc/self/cgroup"),
    ) -> None:
        self._root = root
        self._group = group
        self._self_cgroup = self_cgroup
        self._base: Path | str | None = None

    def prepare(
        self, name: str, memory_bytes: int | None, cpu_millis: int | None
    ) -> CgroupSlot | str:
        """A cgroup for instance ``name`` with its limits written, or why there is none."""
        if self._base is None:
            self._base = self._find_base()
        if isinstance(self._base, str):
            return self._base
        path = self._base / name
        try:
            path.mkdir(exist_ok=True)
            if memory_bytes is not None:
                (path / "memory.max").write_text(f"{memory_bytes}\n")
            if cpu_millis is not None:
                quota = max(1000, cpu_millis * CPU_PERIOD_US // 1000)
                (path / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}\n")
        except OSError as exc:
            CgroupSlot(path).remove()
            return f"cannot set limits in {path}: {exc.strerror or exc}"
        return CgroupSlot(path)

    def _find_base(self) -> Path | str:
        if not (self._root / "cgroup.controllers").is_file():
            return f"cgroup v2 is not mounted at {self._root}"
        own = self._own_cgroup()
        if own is None:
            return "this process is in no cgroup v2 group"
        parent = self._root / own.lstrip("/")
        try:
            available = set((parent / "cgroup.controllers").read_text().split())
        except OSError as exc:
            return f"cannot read {parent / 'cgroup.controllers'}: {exc.strerror or exc}"
        missing = sorted({"cpu", "memory"} - available)
        if missing:
            return f"controllers {', '.join(missing)} are not delegated to {parent}"
        base = parent / self._group
        try:
            _enable_controllers(parent)
            base.mkdir(exist_ok=True)
            _enable_controllers(base)
        except OSError as exc:
            # EBUSY here is cgroups(7)'s "no internal processes" rule: the node's own cgroup
            # holds processes, so it may not hand controllers to children.
            return f"cannot delegate cpu and memory below {parent}: {exc.strerror or exc}"
        return base

    def _own_cgroup(self) -> str | None:
        try:
            lines = self._self_cgroup.read_text().splitlines()
        except OSError:
            return None
        for line in lines:
            # cgroups(7): "hierarchy-ID:controller-list:cgroup-path"; v2 is "0::path".
            if line.startswith("0::"):
                return line[3:]
        return None


def _enable_controllers(cgroup: Path) -> None:
    control = cgroup / "cgroup.subtree_control"
    enabled = set(control.read_text().split()) if control.exists() else set()
    wanted = [f"+{c}" for c in ("cpu", "memory") if c not in enabled]
    if wanted:
        with control.open("w") as f:
            f.write(" ".join(wanted))
