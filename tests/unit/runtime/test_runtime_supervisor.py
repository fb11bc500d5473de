"""The supervisor with real child processes: start, env, logs, health, restarts, stop."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from runtime_testkit import (
    RecordingTraffic,
    env_of,
    get_json,
    http_spec,
    is_running,
    make_config,
    read_pid,
    wait_until,
    write_app,
)

from courtyard.runtime import (
    AppNotRunning,
    InvalidSpec,
    PlaceholderError,
    RuntimeConfig,
    Supervisor,
    SupervisorError,
    parse_log_line,
)


def pids_of(supervisor: Supervisor, app: str = "web") -> list[int]:
    return [i.pid for i in supervisor.instances(app) if i.pid is not None]


async def test_start_ready_and_endpoints(
    supervisor: Supervisor,
    traffic: RecordingTraffic,
    bundle: Path,
    control: Path,
    config: RuntimeConfig,
) -> None:
    await supervisor.apply(http_spec(bundle, control))

    [status] = supervisor.instances("web")
    assert status.state == "ready"
    assert status.id.startswith("web-1-") and len(status.id) == len("web-1-") + 6
    assert status.pid is not None and is_running(status.pid)
    assert status.started_at is not None and status.restarts == 0
    assert supervisor.endpoints() == {
        "web": [{"id": status.id, "host": "127.0.0.1", "port": status.port, "revision": 1}]
    }
    assert traffic.calls[-1] == supervisor.endpoints()
    assert (await get_json(status.port))["instance"] == status.id
    state = supervisor.app_state("web")
    assert (state.phase, state.revision, state.desired_replicas, state.ready_replicas) == (
        "running",
        1,
        1,
        1,
    )
    # The working directory is a copy of the bundle, and the start is on record.
    assert (config.instances_dir / status.id / "app.py").read_text() == (
        bundle / "app.py"
    ).read_text()
    assert (config.records_dir / f"{status.id}.json").is_file()


async def test_applying_the_same_spec_again_changes_nothing(
    supervisor: Supervisor, bundle: Path, control: Path
) -> None:
    spec = http_spec(bundle, control)
    await supervisor.apply(spec)
    before = supervisor.instances("web")
    await supervisor.apply(spec)
    assert supervisor.instances("web") == before


async def test_environment_placeholders_and_no_node_secrets(
    tmp_path: Path,
    traffic: RecordingTraffic,
    bundle: Path,
    control: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COURTYARD_TEST_SECRET", "hunter2")
    monkeypatch.setenv("TZ", "Europe/Vienna")
    config = make_config(tmp_path / "data", extra_env={"OPERATOR": "ops-team"})
    supervisor = Supervisor(config, traffic)
    traffic.supervisor = supervisor
    await supervisor.start()
    try:
        spec = http_spec(
            bundle,
            control,
            command=("python", "app.py", "${PORT}", "--who=${GREETING}", "$$literal"),
            env={
                "CONTROL_DIR": str(control),
                "GREETING": "hi ${COURTYARD_APP}@${PORT}",
                "PRICE": "$$5",
            },
        )
        await supervisor.apply(spec)
        [status] = supervisor.instances("web")
        env = env_of(await get_json(status.port, "/env"))
        argv = await get_json(status.port, "/argv")
    finally:
        await supervisor.aclose()

    assert "COURTYARD_TEST_SECRET" not in env
    assert env["PORT"] == str(status.port)
    assert env["HOST"] == "127.0.0.1"
    assert env["COURTYARD_APP"] == "web"
    assert env["COURTYARD_REVISION"] == "1"
    assert env["COURTYARD_INSTANCE"] == status.id
    assert env["COURTYARD_PLATFORM_URL"] == "http://127.0.0.1:9"
    assert env["COURTYARD_NODE_ID"] == "test-node"
    assert env["GREETING"] == f"hi web@{status.port}"
    assert env["PRICE"] == "$5"
    assert env["OPERATOR"] == "ops-team"
    assert env["TZ"] == "Europe/Vienna"
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    allowed = {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "PYTHONUNBUFFERED", "CONTROL_DIR"}
    allowed |= {"GREETING", "PRICE", "OPERATOR", "PORT", "HOST"}
    # What the interpreter adds on its own (LC_CTYPE coercion) is not from the node.
    assert {k for k in env if not k.startswith("COURTYARD_")} - allowed <= {"LC_CTYPE"}
    assert argv[1:] == [str(status.port), f"--who=hi web@{status.port}", "$literal"]


async def test_bad_specs_start_nothing(supervisor: Supervisor, bundle: Path, control: Path) -> None:
    with pytest.raises(PlaceholderError, match=r"\$\{NOPE\}"):
        await supervisor.apply(http_spec(bundle, control, command=("python", "app.py", "${NOPE}")))
    with pytest.raises(InvalidSpec, match="RFC 1123"):
        await supervisor.apply(http_spec(bundle, control, app="Not A Name"))
    assert supervisor.instances() == []
    with pytest.raises(AppNotRunning):
        supervisor.app_state("web")


async def test_not_started_or_closed_refuses(
    config: RuntimeConfig, bundle: Path, control: Path
) -> None:
    supervisor = Supervisor(config, RecordingTraffic())
    with pytest.raises(SupervisorError, match="not started"):
        await supervisor.apply(http_spec(bundle, control))
    await supervisor.start()
    await supervisor.aclose()
    with pytest.raises(SupervisorError, match="closed"):
        await supervisor.apply(http_spec(bundle, control))


async def test_logs_are_captured_and_rotated(
    tmp_path: Path, traffic: RecordingTraffic, bundle: Path, control: Path
) -> None:
    config = make_config(tmp_path / "data", log_max_bytes=2000, log_backups=2)
    supervisor = Supervisor(config, traffic)
    traffic.supervisor = supervisor
    await supervisor.start()
    try:
        await supervisor.apply(
            http_spec(bundle, control, env={"CONTROL_DIR": str(control), "SPAM_LINES": "300"})
        )
        [status] = supervisor.instances("web")
        await get_json(status.port, "/hello")
        current = config.logs_dir / "web" / f"{status.id}.log"
        await wait_until(lambda: b"GET /hello" in current.read_bytes(), what="the request log line")
    finally:
        await supervisor.aclose()

    (config.logs_dir / "web" / "worker-1.log").write_text("not an instance log")
    files = supervisor.log_files("web")
    assert [f.name for f in files] == [
        f"{status.id}.log.2",
        f"{status.id}.log.1",
        f"{status.id}.log",
    ]
    assert all(f.stat().st_size <= 2000 for f in files)
    # Each stored line is "<time> <stream> F <what the app wrote>" (CRI format).
    lines = [
        parse_log_line(line)[1].decode() for f in files for line in f.read_bytes().splitlines()
    ]
    spam = [line for line in lines if line.startswith("line ")]
    # The oldest lines were rotated away; what is left is whole and in order.
    assert spam and all(line == f"line {int(line[5:9]):04d} " + "x" * 40 for line in spam)
    assert [int(line[5:9]) for line in spam] == list(range(300 - len(spam), 300))
    assert f"stderr says hello from {status.id}" in lines
    assert supervisor.log_files("no-such-app") == []
    assert supervisor.log_files("../etc") == []


async def test_a_killed_instance_is_restarted(
    supervisor: Supervisor, traffic: RecordingTraffic, bundle: Path, control: Path
) -> None:
    await supervisor.apply(http_spec(bundle, control))
    [before] = supervisor.instances("web")
    assert before.pid is not None
    os.kill(before.pid, signal.SIGKILL)

    def restarted() -> bool:
        [now] = supervisor.instances("web")
        return now.restarts == 1 and now.state == "ready"

    await wait_until(restarted, what="the instance to come back")
    [after] = supervisor.instances("web")
    assert after.id == before.id
    assert after.pid != before.pid
    assert after.last_exit == -signal.SIGKILL
    assert supervisor.endpoints()["web"][0]["port"] == after.port
    assert (await get_json(after.port))["instance"] == before.id
    # The data plane heard of the death and of the return.
    ids = traffic.ids("web")
    assert [] in ids
    assert ids[-1] == [before.id]
    assert supervisor.app_state("web").restarts == 1


async def test_crash_loop_then_recovery(
    supervisor: Supervisor, bundle: Path, control: Path, tmp_path: Path
) -> None:
    await supervisor.apply(http_spec(bundle, control))
    [status] = supervisor.instances("web")
    assert status.pid is not None
    (control / "crash").touch()
    os.kill(status.pid, signal.SIGKILL)

    await wait_until(lambda: supervisor.app_state("web").phase == "crash-loop", what="crash-loop")
    state = supervisor.app_state("web")
    assert state.ready_replicas == 0
    assert f"instance {status.id} exited with code 3" in state.message
    assert "crash-loop" in state.message
    assert supervisor.endpoints() == {"web": []}

    # The node is unharmed: another app starts and serves meanwhile.
    other = write_app(tmp_path / "other")
    await supervisor.apply(http_spec(other, tmp_path, app="other"))
    assert supervisor.app_state("other").phase == "running"

    (control / "crash").unlink()
    await wait_until(lambda: supervisor.app_state("web").phase == "running", what="recovery")
    [recovered] = supervisor.instances("web")
    assert recovered.restarts >= 3  # crash_loop_restarts in the test config
    assert recovered.last_exit == 3


async def test_failed_liveness_restarts_the_instance(
    supervisor: Supervisor, traffic: RecordingTraffic, bundle: Path, control: Path
) -> None:
    await supervisor.apply(http_spec(bundle, control, failure_threshold=3, ready_timeout=1.0))
    [before] = supervisor.instances("web")
    seen: set[str] = set()

    def replaced() -> bool:
        [now] = supervisor.instances("web")
        seen.add(now.state)
        return now.restarts >= 1

    (control / "unhealthy").touch()
    await wait_until(replaced, what="a restart after failed health checks")
    (control / "unhealthy").unlink()
    await wait_until(lambda: supervisor.app_state("web").phase == "running", what="recovery")
    [after] = supervisor.instances("web")
    assert "unhealthy" in seen
    assert after.pid != before.pid
    assert after.last_exit == -signal.SIGTERM  # stopped, not crashed
    assert before.pid is not None and not is_running(before.pid)
    assert [] in traffic.ids("web")


async def test_stop_restart_and_remove(
    supervisor: Supervisor, config: RuntimeConfig, bundle: Path, control: Path
) -> None:
    await supervisor.apply(http_spec(bundle, control, replicas=2))
    pids = pids_of(supervisor)

    await supervisor.stop("web")
    state = supervisor.app_state("web")
    assert (state.phase, state.desired_replicas, state.ready_replicas) == ("stopped", 0, 0)
    assert supervisor.endpoints() == {"web": []}
    assert supervisor.instances("web") == []
    assert not any(is_running(pid) for pid in pids)
    assert list(config.instances_dir.iterdir()) == []
    assert list(config.records_dir.iterdir()) == []

    await supervisor.restart("web")  # starts a stopped app
    assert supervisor.app_state("web").phase == "running"
    assert len(supervisor.endpoints()["web"]) == 2

    pids = pids_of(supervisor)
    await supervisor.remove("web")
    with pytest.raises(AppNotRunning):
        supervisor.app_state("web")
    assert "web" not in supervisor.endpoints()
    assert not any(is_running(pid) for pid in pids)
    assert list(config.instances_dir.iterdir()) == []
    assert len(supervisor.log_files("web")) == 4  # logs are kept
    for action in (supervisor.stop, supervisor.restart, supervisor.remove):
        with pytest.raises(AppNotRunning):
            await action("web")


async def test_grandchildren_stop_with_their_instance(
    supervisor: Supervisor, bundle: Path, control: Path
) -> None:
    await supervisor.apply(
        http_spec(bundle, control, env={"CONTROL_DIR": str(control), "GRANDCHILD": "1"})
    )
    [status] = supervisor.instances("web")
    grandchild = read_pid(control / f"grandchild-{status.id}.pid")
    assert is_running(grandchild)
    await supervisor.stop("web")
    await wait_until(lambda: not is_running(grandchild), timeout=5, what="the grandchild to stop")


async def test_memory_limit_and_unenforced_cpu_are_reported(
    supervisor: Supervisor, bundle: Path, control: Path
) -> None:
    limit = 768 * 1024 * 1024
    await supervisor.apply(http_spec(bundle, control, memory_bytes=limit, cpu_millis=500))
    [status] = supervisor.instances("web")
    assert await get_json(status.port, "/rlimit") == [limit, limit]
    assert "memory 768 MiB by RLIMIT_DATA" in status.limits
    if "cgroup v2 cpu.max" not in status.limits:  # this machine has no delegated cgroup v2
        assert "CPU limit not enforced" in status.limits
        assert "CPU limit not enforced" in supervisor.app_state("web").message


async def test_tcp_readiness_without_a_health_path(
    supervisor: Supervisor, bundle: Path, control: Path
) -> None:
    (control / "unhealthy").touch()  # /healthz fails, but it is not asked
    await supervisor.apply(http_spec(bundle, control, health_path=None))
    assert supervisor.app_state("web").phase == "running"
