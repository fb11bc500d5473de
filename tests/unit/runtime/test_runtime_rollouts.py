"""Rollouts with real child processes: replacement, failure, rescaling, cancellation."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from runtime_testkit import (
    RecordingTraffic,
    get_json,
    http_spec,
    is_running,
    wait_until,
)

from courtyard.runtime import (
    RolloutFailed,
    RuntimeConfig,
    Supervisor,
    WorkloadSpec,
)


async def test_an_app_that_exits_at_once_fails_its_first_rollout_then_crash_loops(
    supervisor: Supervisor, config: RuntimeConfig, bundle: Path, control: Path
) -> None:
    spec = WorkloadSpec(
        app="oops",
        revision=1,
        bundle=None,
        command=("python", "-c", "import sys; print('cannot find my config'); sys.exit(3)"),
        replicas=2,
    )
    with pytest.raises(RolloutFailed) as caught:
        await supervisor.apply(spec)
    error = caught.value
    assert error.app == "oops" and error.revision == 1
    assert error.instance is not None and error.instance.startswith("oops-1-")
    assert f"instance {error.instance} exited with code 3 before it was ready" in str(error)
    assert "cannot find my config" in str(error)
    assert error.log_tail == ("cannot find my config",)
    assert supervisor.app_state("oops").phase in ("failed", "crash-loop")
    assert supervisor.endpoints()["oops"] == []

    # Nothing older serves, so the instances stay under restart policy: crash-loop.
    await wait_until(lambda: supervisor.app_state("oops").phase == "crash-loop", what="crash-loop")
    state = supervisor.app_state("oops")
    assert (state.desired_replicas, state.ready_replicas) == (2, 0)
    assert "exited with code 3" in state.message and "crash-loop" in state.message
    crashing = supervisor.instances("oops")
    assert len(crashing) == 2

    # Still usable: a good spec for the same app replaces the crashing instances.
    await supervisor.apply(http_spec(bundle, control, app="oops", revision=2))
    state = supervisor.app_state("oops")
    assert (state.phase, state.revision, state.message) == ("running", 2, "")
    [serving] = supervisor.instances("oops")
    assert sorted(p.name for p in config.instances_dir.iterdir()) == [serving.id]


async def test_a_first_rollout_that_fails_can_recover_on_its_own(
    supervisor: Supervisor, bundle: Path, control: Path
) -> None:
    (control / "crash").touch()
    with pytest.raises(RolloutFailed, match="exited with code 3"):
        await supervisor.apply(http_spec(bundle, control))
    (control / "crash").unlink()  # e.g. the database it needed came up
    await wait_until(lambda: supervisor.app_state("web").phase == "running", what="recovery")
    assert supervisor.app_state("web").message == ""
    assert len(supervisor.endpoints()["web"]) == 1


async def test_a_missing_command_fails_the_rollout(supervisor: Supervisor) -> None:
    spec = WorkloadSpec(app="nocmd", revision=1, bundle=None, command=("no-such-command-xyz",))
    with pytest.raises(RolloutFailed, match="could not start") as caught:
        await supervisor.apply(spec)
    assert any("no-such-command-xyz" in line for line in caught.value.log_tail)


async def test_rolling_replacement(
    supervisor: Supervisor, traffic: RecordingTraffic, bundle: Path, tmp_path: Path
) -> None:
    control1, control2 = tmp_path / "c1", tmp_path / "c2"
    control1.mkdir()
    control2.mkdir()
    await supervisor.apply(http_spec(bundle, control1, replicas=2))
    old = supervisor.instances("web")
    old_ids = sorted(i.id for i in old)
    old_pids = [i.pid for i in old if i.pid is not None]
    traffic.watch = lambda: all(is_running(pid) for pid in old_pids)

    (control2 / "unhealthy").touch()  # the new revision is held back from ready
    rollout = asyncio.create_task(
        supervisor.apply(http_spec(bundle, control2, revision=2, replicas=2))
    )
    await wait_until(
        lambda: len(supervisor.instances("web")) == 4, what="the new instances to start"
    )
    assert supervisor.app_state("web").phase == "rolling-out"
    await asyncio.sleep(0.3)
    # Old ones serve until the new ones are ready.
    assert sorted(i["id"] for i in supervisor.endpoints()["web"]) == old_ids
    for instance in old:
        assert (await get_json(instance.port))["instance"] == instance.id
    assert not rollout.done()

    (control2 / "unhealthy").unlink()
    await rollout

    new = supervisor.instances("web")
    assert sorted(i.revision for i in new) == [2, 2]
    new_ids = sorted(i.id for i in new)
    assert sorted(i["id"] for i in supervisor.endpoints()["web"]) == new_ids
    # The switch was published while the old processes still ran: they drain, then stop.
    switch = next(n for n, ids in enumerate(traffic.ids("web")) if sorted(ids) == new_ids)
    assert traffic.watched[switch] is True
    assert all(sorted(ids) != sorted(old_ids + new_ids) for ids in traffic.ids("web"))
    assert not any(is_running(pid) for pid in old_pids)
    state = supervisor.app_state("web")
    assert (state.phase, state.revision, state.ready_replicas) == ("running", 2, 2)


async def test_a_failed_rollout_keeps_the_old_revision(
    supervisor: Supervisor, config: RuntimeConfig, bundle: Path, tmp_path: Path
) -> None:
    control1, control2 = tmp_path / "c1", tmp_path / "c2"
    control1.mkdir()
    control2.mkdir()
    await supervisor.apply(http_spec(bundle, control1))
    [old] = supervisor.instances("web")
    endpoints = supervisor.endpoints()

    (control2 / "crash").touch()
    with pytest.raises(RolloutFailed, match="exited with code 3 before it was ready") as caught:
        await supervisor.apply(http_spec(bundle, control2, revision=2))
    assert "crashing on purpose" in caught.value.log_tail

    (control2 / "crash").unlink()
    (control2 / "unhealthy").touch()
    with pytest.raises(
        RolloutFailed, match=r"not ready within 0.5 s: GET /healthz answered HTTP 503"
    ):
        await supervisor.apply(http_spec(bundle, control2, revision=3, ready_timeout=0.5))

    assert supervisor.endpoints() == endpoints
    assert supervisor.instances("web") == [old]
    assert old.pid is not None and is_running(old.pid)
    state = supervisor.app_state("web")
    assert (state.phase, state.revision) == ("running", 1)
    assert "rollout of revision 3 failed" in state.message
    assert [p.name for p in config.instances_dir.iterdir()] == [old.id]

    # restart rolls the serving revision, not the failed one.
    await supervisor.restart("web")
    [fresh] = supervisor.instances("web")
    assert fresh.revision == 1 and fresh.id != old.id
    assert supervisor.app_state("web").message == ""


async def test_three_replicas_and_rescaling(
    supervisor: Supervisor, bundle: Path, control: Path
) -> None:
    spec = http_spec(bundle, control, replicas=3)
    await supervisor.apply(spec)
    endpoints = supervisor.endpoints()["web"]
    assert len(endpoints) == 3
    assert len({e["port"] for e in endpoints}) == 3
    for endpoint in endpoints:
        assert (await get_json(endpoint["port"]))["instance"] == endpoint["id"]
    ids = {e["id"] for e in endpoints}

    await supervisor.apply(replace(spec, replicas=1))  # same revision: no rollout
    [kept] = supervisor.instances("web")
    assert kept.id in ids and kept.state == "ready"
    await supervisor.apply(replace(spec, replicas=2))
    assert kept.id in {i.id for i in supervisor.instances("web")}
    state = supervisor.app_state("web")
    assert (state.desired_replicas, state.ready_replicas, state.phase) == (2, 2, "running")


async def test_a_failing_traffic_switch_harms_nothing(
    config: RuntimeConfig, bundle: Path, control: Path
) -> None:
    class BrokenTraffic:
        calls = 0

        async def sync(self) -> None:
            self.calls += 1
            raise ConnectionError("gateway unreachable")

    traffic = BrokenTraffic()
    supervisor = Supervisor(config, traffic)
    await supervisor.start()
    try:
        await supervisor.apply(http_spec(bundle, control))
        await supervisor.apply(http_spec(bundle, control, revision=2))
        assert supervisor.app_state("web").phase == "running"
        assert traffic.calls >= 2
    finally:
        await supervisor.aclose()


async def test_a_cancelled_rollout_leaves_nothing_behind(
    supervisor: Supervisor, config: RuntimeConfig, bundle: Path, tmp_path: Path
) -> None:
    control1, control2 = tmp_path / "c1", tmp_path / "c2"
    control1.mkdir()
    control2.mkdir()
    await supervisor.apply(http_spec(bundle, control1))
    [old] = supervisor.instances("web")
    (control2 / "unhealthy").touch()
    rollout = asyncio.create_task(supervisor.apply(http_spec(bundle, control2, revision=2)))
    await wait_until(lambda: len(supervisor.instances("web")) == 2, what="the new instance")
    new_pids = [i.pid for i in supervisor.instances("web") if i.revision == 2 and i.pid]
    rollout.cancel()
    with pytest.raises(asyncio.CancelledError):
        await rollout
    assert supervisor.instances("web") == [old]
    assert not any(is_running(pid) for pid in new_pids)
    assert [p.name for p in config.instances_dir.iterdir()] == [old.id]
    assert supervisor.app_state("web").phase == "running"
