"""No orphans: a node that dies leaves nothing running once it (or a successor) starts again."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from runtime_testkit import RecordingTraffic, http_spec, is_running, read_pid, wait_until

from courtyard.runtime import (
    LaunchRequest,
    LocalProcessLauncher,
    ProcessHandle,
    RuntimeConfig,
    Supervisor,
)
from courtyard.runtime._records import (
    InstanceRecord,
    boot_id,
    read_records,
    start_ticks,
    write_record,
)


class FreezableLauncher:
    """A LocalProcessLauncher that can be made to refuse: a node that has lost its hands."""

    def __init__(self) -> None:
        self.inner = LocalProcessLauncher()
        self.is_frozen = False

    async def launch(self, request: LaunchRequest) -> ProcessHandle:
        if self.is_frozen:
            raise OSError("this node is gone")
        return await self.inner.launch(request)


async def test_start_kills_what_a_previous_run_left(
    config: RuntimeConfig, bundle: Path, control: Path
) -> None:
    launcher = FreezableLauncher()
    previous_traffic = RecordingTraffic()
    previous = Supervisor(config, previous_traffic, launcher=launcher)
    previous_traffic.supervisor = previous
    await previous.start()
    env = {"CONTROL_DIR": str(control), "GRANDCHILD": "1"}
    await previous.apply(http_spec(bundle, control, replicas=2, env=env))
    leaders = [i.pid for i in previous.instances("web") if i.pid is not None]
    grandchildren = [
        read_pid(control / f"grandchild-{i.id}.pid") for i in previous.instances("web")
    ]
    assert len(leaders) == 2 and all(map(is_running, leaders + grandchildren))
    launcher.is_frozen = True  # the previous node can no longer act, and is never closed

    successor = Supervisor(config, RecordingTraffic())
    try:
        await successor.start()
        assert not any(map(is_running, leaders + grandchildren))
        assert list(config.records_dir.iterdir()) == []
        assert list(config.instances_dir.iterdir()) == []
        assert successor.instances() == []
    finally:
        await successor.aclose()
        await previous.aclose()


async def test_records_of_a_node_that_still_runs_are_left_alone(
    config: RuntimeConfig, tmp_path: Path
) -> None:
    """Two nodes on one data directory: the second one must not kill the first one's apps."""
    sleep = [sys.executable, "-c", "import time; time.sleep(60)"]
    other_node = subprocess.Popen(sleep)
    leader = subprocess.Popen(sleep, start_new_session=True)
    try:
        record = InstanceRecord(
            id="web-1-abcdef",
            app="web",
            revision=1,
            pid=leader.pid,
            pgid=leader.pid,
            start_ticks=start_ticks(leader.pid),
            boot_id=boot_id(),
            node_id="other-node",
            started_at=0.0,
            node_pid=other_node.pid,
            node_start_ticks=start_ticks(other_node.pid),
        )
        write_record(config.records_dir, record)
        (config.instances_dir / record.id).mkdir(parents=True)

        first = Supervisor(config, RecordingTraffic())
        await first.start()
        await first.aclose()
        assert is_running(leader.pid)
        assert read_records(config.records_dir) == [record]
        assert (config.instances_dir / record.id).is_dir()

        other_node.kill()  # now the record is an orphan's
        other_node.wait()
        second = Supervisor(config, RecordingTraffic())
        await second.start()
        await second.aclose()
        assert leader.wait(timeout=5) == -signal.SIGTERM
        assert read_records(config.records_dir) == []
        assert not (config.instances_dir / record.id).exists()
    finally:
        for process in (other_node, leader):
            if process.poll() is None:
                process.kill()
                process.wait()


NODE = r"""
import asyncio, json, sys
from pathlib import Path
from courtyard.runtime import RuntimeConfig, Supervisor, WorkloadSpec

class Traffic:
    async def sync(self):
        pass

async def main():
    data, bundle, control = map(Path, sys.argv[1:4])
    config = RuntimeConfig(data_dir=data, node_id="test-node", platform_url="http://127.0.0.1:9")
    supervisor = Supervisor(config, Traffic())
    await supervisor.start()
    await supervisor.apply(WorkloadSpec(
        app="web", revision=1, bundle=bundle, command=("python", "app.py", "${PORT}"),
        env={"CONTROL_DIR": str(control), "GRANDCHILD": "1"}, replicas=2,
    ))
    print(json.dumps([[i.id, i.pid] for i in supervisor.instances("web")]), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_instances_die_with_a_killed_node_and_leftovers_go_at_the_next_start(
    tmp_path: Path, config: RuntimeConfig, bundle: Path, control: Path
) -> None:
    script = tmp_path / "node.py"
    script.write_text(NODE)
    node = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(config.data_dir),
        str(bundle),
        str(control),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert node.stdout is not None
        line = await asyncio.wait_for(node.stdout.readline(), timeout=20)
        instances = json.loads(line)
        leaders = [pid for _, pid in instances]
        grandchildren = [read_pid(control / f"grandchild-{iid}.pid") for iid, _ in instances]
        assert all(map(is_running, leaders + grandchildren))

        os.kill(node.pid, signal.SIGKILL)  # no chance to clean up
        await node.wait()
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()

    # prctl(PR_SET_PDEATHSIG) took the instances down with the node ...
    await wait_until(lambda: not any(map(is_running, leaders)), timeout=5, what="PDEATHSIG")
    # ... but not what they forked: that escaped, and the next start finds it by its group.
    assert all(map(is_running, grandchildren))
    successor = Supervisor(config, RecordingTraffic())
    try:
        await successor.start()
        assert not any(map(is_running, grandchildren))
        assert list(config.records_dir.iterdir()) == []
    finally:
        await successor.aclose()
