"""The local launcher: real child processes, their groups, limits and output."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from runtime_testkit import is_running, wait_until

from courtyard.runtime import LaunchRequest, LocalProcessLauncher
from courtyard.runtime._cgroups import CgroupV2


class RecordingSink:
    def __init__(self) -> None:
        self.data = b""
        self.is_closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.is_closed = True


def request(tmp_path: Path, code: str, sink: RecordingSink, **changes: object) -> LaunchRequest:
    values: dict[str, object] = {
        "instance_id": "t-1-abcdef",
        "argv": (sys.executable, "-c", code),
        "cwd": tmp_path,
        "env": {"PATH": "/usr/bin:/bin", "GREETING": "hello"},
        "output": sink,
    }
    values.update(changes)
    return LaunchRequest(**values)  # type: ignore[arg-type]


def no_cgroups(tmp_path: Path) -> LocalProcessLauncher:
    return LocalProcessLauncher(cgroups=CgroupV2(root=tmp_path / "no-cgroup-here"))


async def test_output_exit_code_and_own_group(tmp_path: Path) -> None:
    sink = RecordingSink()
    code = (
        "import os, sys; print(os.environ['GREETING'], os.getcwd(), flush=True); "
        "print('to stderr', file=sys.stderr); "
        "print(os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid()); sys.exit(7)"
    )
    handle = await no_cgroups(tmp_path).launch(request(tmp_path, code, sink))
    assert handle.pgid == handle.pid
    assert handle.start_ticks > 0
    assert await handle.wait() == 7
    await handle.wait_closed()
    assert handle.returncode == 7
    assert sink.is_closed
    assert sink.data.decode().splitlines() == [f"hello {tmp_path}", "to stderr", "True True"]
    handle.signal_group(signal.SIGTERM)  # after the exit: a no-op, never someone else's group


async def test_group_members_die_with_the_leader(tmp_path: Path) -> None:
    sink = RecordingSink()
    code = (
        "import subprocess, sys; "
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        "print(child.pid, flush=True)"
    )
    handle = await no_cgroups(tmp_path).launch(request(tmp_path, code, sink))
    assert await handle.wait() == 0
    await handle.wait_closed()
    grandchild = int(sink.data.decode().split()[0])
    await wait_until(lambda: not is_running(grandchild), timeout=5, what="the grandchild to die")


async def test_signal_group_reaches_everyone(tmp_path: Path) -> None:
    sink = RecordingSink()
    code = "import time; print('up', flush=True); time.sleep(60)"
    handle = await no_cgroups(tmp_path).launch(request(tmp_path, code, sink))
    await wait_until(lambda: sink.data == b"up\n", what="the child to start")
    handle.signal_group(signal.SIGTERM)
    assert await handle.wait() == -signal.SIGTERM
    await handle.wait_closed()


async def test_a_missing_command_raises(tmp_path: Path) -> None:
    sink = RecordingSink()
    with pytest.raises(FileNotFoundError):
        await no_cgroups(tmp_path).launch(
            request(tmp_path, "", sink, argv=("no-such-command-anywhere",))
        )


async def test_memory_limit_is_rlimit_data(tmp_path: Path) -> None:
    sink = RecordingSink()
    code = "import resource; print(*resource.getrlimit(resource.RLIMIT_DATA))"
    handle = await no_cgroups(tmp_path).launch(
        request(tmp_path, code, sink, memory_bytes=512 * 1024 * 1024, cpu_millis=250)
    )
    assert await handle.wait() == 0
    await handle.wait_closed()
    assert sink.data == f"{512 * 1024 * 1024} {512 * 1024 * 1024}\n".encode()
    assert "memory 512 MiB by RLIMIT_DATA (per process)" in handle.limits
    assert "CPU limit not enforced (cgroup v2 is not mounted at" in handle.limits


async def test_no_limits_no_notes(tmp_path: Path) -> None:
    sink = RecordingSink()
    handle = await no_cgroups(tmp_path).launch(request(tmp_path, "pass", sink))
    assert await handle.wait() == 0
    await handle.wait_closed()
    assert handle.limits == ""


async def test_cgroup_v2_limits_in_a_delegated_tree(tmp_path: Path) -> None:
    """A directory shaped like a delegated cgroup v2 tree stands in for /sys/fs/cgroup."""
    root = tmp_path / "cgroup"
    (root / "node.service").mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "node.service" / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / "node.service" / "cgroup.subtree_control").write_text("")
    own = tmp_path / "self-cgroup"
    own.write_text("0::/node.service\n")
    launcher = LocalProcessLauncher(cgroups=CgroupV2(root=root, self_cgroup=own))
    sink = RecordingSink()
    handle = await launcher.launch(
        request(tmp_path, "pass", sink, memory_bytes=256 * 1024 * 1024, cpu_millis=500)
    )
    await handle.wait()
    await handle.wait_closed()
    slot = root / "node.service" / "courtyard" / "t-1-abcdef"
    assert (root / "node.service" / "cgroup.subtree_control").read_text() == "+cpu +memory"
    assert (
        root / "node.service" / "courtyard" / "cgroup.subtree_control"
    ).read_text() == "+cpu +memory"
    assert (slot / "memory.max").read_text() == f"{256 * 1024 * 1024}\n"
    assert (slot / "cpu.max").read_text() == "50000 100000\n"
    assert (slot / "cgroup.procs").read_text() == f"{handle.pid}\n"
    assert handle.limits == (
        "memory 256 MiB by RLIMIT_DATA and cgroup v2 memory.max; CPU 500m by cgroup v2 cpu.max"
    )


async def test_controllers_not_delegated(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("pids\n")
    own = tmp_path / "self-cgroup"
    own.write_text("0::/\n")
    launcher = LocalProcessLauncher(cgroups=CgroupV2(root=root, self_cgroup=own))
    sink = RecordingSink()
    handle = await launcher.launch(request(tmp_path, "pass", sink, cpu_millis=100))
    await handle.wait()
    await handle.wait_closed()
    assert (
        handle.limits
        == f"CPU limit not enforced (controllers cpu, memory are not delegated to {root})"
    )


async def test_a_daemon_holding_the_pipe_does_not_hold_the_log_open(tmp_path: Path) -> None:
    """A grandchild that left the group (setsid) keeps the pipe; the launcher stops waiting."""
    sink = RecordingSink()
    code = (
        "import os, subprocess, sys; "
        "d = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], "
        "start_new_session=True); print(d.pid, flush=True)"
    )
    launcher = LocalProcessLauncher(cgroups=CgroupV2(root=tmp_path / "none"), output_grace=0.3)
    handle = await launcher.launch(request(tmp_path, code, sink))
    assert await handle.wait() == 0
    daemon = int(sink.data.decode().split()[0])
    try:
        assert is_running(daemon)  # not in the group: out of reach of killpg
        await handle.wait_closed()
        assert sink.is_closed
    finally:
        os.kill(daemon, signal.SIGKILL)
