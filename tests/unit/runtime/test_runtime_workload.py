"""Mesh credentials of instances: the file the supervisor writes before a process starts, the
variables that point to it, its rewrite at 2/3 of the lifetime (FakeClock, no sleeping) and its
release when the process stops, crashes or is replaced. Real child processes, a fake issuer."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from runtime_testkit import (
    RecordingTraffic,
    get_json,
    http_spec,
    make_config,
    no_children,
    wait_until,
)

from courtyard.core import Clock, FakeClock, SystemClock
from courtyard.runtime import (
    CREDENTIAL_FILE,
    InvalidSpec,
    IssuedCredential,
    PlaceholderError,
    RolloutFailed,
    RuntimeConfig,
    Supervisor,
    WorkloadSpec,
)
from courtyard.runtime._environment import check_spec, launch_plan
from courtyard.runtime._workload import RETRY_DELAY, WorkloadCredential, write_credential

T = TypeVar("T")
MESH_URL = "http://127.0.0.1:7777"

# Reads its credential file once at start (what it saw before it could do anything) and again
# on every request (what a client that rereads the file would send now).
APP = r"""
import http.server, json, os, stat, sys

path = os.environ.get("COURTYARD_WORKLOAD_CREDENTIAL")

def look():
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return {"token": f.read(), "mode": stat.S_IMODE(os.stat(path).st_mode)}

at_start = look()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        payload = {
            "at_start": at_start,
            "now": look(),
            "path": path,
            "cwd": os.getcwd(),
            "mesh_url": os.environ.get("COURTYARD_MESH_URL"),
            "argv": sys.argv,
        }
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), Handler).serve_forever()
"""


@dataclass
class FakeIssuer:
    """A CredentialIssuer that hands out numbered tokens and remembers which are live."""

    clock: Clock
    lifetime: float = 600.0
    failures: int = 0  # the next this many issues fail
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (what, app, instance)
    live: dict[str, list[str]] = field(default_factory=dict)  # instance -> live tokens
    issued: list[str] = field(default_factory=list)

    async def issue(self, app: str, instance: str) -> IssuedCredential:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the key ring is unavailable")
        token = f"token-{len(self.issued) + 1}-{instance}"
        self.issued.append(token)
        self.events.append(("issue", app, instance))
        self.live.setdefault(instance, []).append(token)
        return IssuedCredential(token=token, expires_at=self.clock.time() + self.lifetime)

    async def release(self, app: str, instance: str) -> None:
        self.events.append(("release", app, instance))
        self.live.pop(instance, None)

    def count(self, what: str, instance: str) -> int:
        return sum(1 for w, _, i in self.events if w == what and i == instance)


def app_bundle(tmp_path: Path) -> Path:
    folder = tmp_path / "bundle"
    folder.mkdir()
    (folder / "app.py").write_text(APP)
    (folder / CREDENTIAL_FILE).write_text("a stale file from the bundle")
    return folder


def spec_of(bundle: Path, control: Path, **overrides: Any) -> WorkloadSpec:
    settings: dict[str, Any] = {"command": ("python", "app.py", "--mesh=${COURTYARD_MESH_URL}")}
    settings.update(overrides)
    return http_spec(bundle, control, **settings)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def pumped(clock: FakeClock, work: Awaitable[T], *, timeout: float = 20.0) -> T:
    """Await ``work`` while moving ``clock`` in small steps, as the passing of real time would
    (readiness polls sleep on the supervisor's clock)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not task.done():
        if loop.time() > deadline:
            task.cancel()
            raise AssertionError(f"not done within {timeout} s")
        await clock.advance(0.05)
        await asyncio.sleep(0.01)
    return task.result()


@pytest.fixture
def config(tmp_path: Path) -> RuntimeConfig:
    return make_config(tmp_path / "data", mesh_url=MESH_URL)


@pytest.fixture
def control(tmp_path: Path) -> Path:
    folder = tmp_path / "control"
    folder.mkdir()
    return folder


@pytest.fixture
def issuer() -> FakeIssuer:
    return FakeIssuer(SystemClock())


@pytest.fixture
def traffic() -> RecordingTraffic:
    return RecordingTraffic()


@pytest.fixture
async def supervisor(
    config: RuntimeConfig, issuer: FakeIssuer, traffic: RecordingTraffic
) -> AsyncIterator[Supervisor]:
    sup = Supervisor(config, traffic, clock=issuer.clock, credentials=issuer)
    traffic.supervisor = sup
    await sup.start()
    try:
        yield sup
    finally:
        await sup.aclose()
        await wait_until(no_children, timeout=5, what="every child process to be gone")


# -- the credential file on its own (FakeClock, no processes) ------------------------------


async def test_the_file_is_private_replaced_atomically_and_refreshed_at_two_thirds(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    issuer = FakeIssuer(clock)
    credential = WorkloadCredential(
        issuer, app="web", instance="web-1-aaaaaa", workdir=tmp_path, clock=clock, mesh_url=None
    )
    assert credential.environment() == {
        "COURTYARD_WORKLOAD_CREDENTIAL": str(tmp_path / CREDENTIAL_FILE)
    }
    (tmp_path / CREDENTIAL_FILE).write_text("old")
    os.chmod(tmp_path / CREDENTIAL_FILE, 0o644)
    await credential.open()
    try:
        assert credential.path.read_text() == issuer.issued[-1]
        assert mode_of(credential.path) == 0o600
        await clock.advance(399)
        assert len(issuer.issued) == 1
        await clock.advance(1)  # 2/3 of 600 s
        assert len(issuer.issued) == 2
        assert credential.path.read_text() == issuer.issued[-1]
        assert mode_of(credential.path) == 0o600
        await clock.advance(400)
        assert len(issuer.issued) == 3 and credential.refreshes == 2
        assert issuer.count("release", "web-1-aaaaaa") == 0  # old ones expire on their own
        assert sorted(os.listdir(tmp_path)) == [CREDENTIAL_FILE]  # no temporary file left
    finally:
        await credential.close()
    assert not credential.path.exists()
    assert issuer.live == {}
    await clock.advance(10_000)
    assert len(issuer.issued) == 3  # no refresh after close
    await credential.close()  # twice is fine
    assert issuer.count("release", "web-1-aaaaaa") == 1


async def test_a_failed_refresh_keeps_the_old_file_and_tries_again(tmp_path: Path) -> None:
    clock = FakeClock()
    issuer = FakeIssuer(clock)
    credential = WorkloadCredential(
        issuer, app="web", instance="i", workdir=tmp_path, clock=clock, mesh_url=MESH_URL
    )
    await credential.open()
    try:
        first = credential.path.read_text()
        issuer.failures = 2
        await clock.advance(400)
        assert credential.path.read_text() == first
        await clock.advance(RETRY_DELAY)
        assert credential.path.read_text() == first  # failed again
        await clock.advance(RETRY_DELAY)
        assert credential.path.read_text() == issuer.issued[-1] != first
    finally:
        await credential.close()


async def test_write_credential_leaves_no_partial_file_behind(tmp_path: Path) -> None:
    target = tmp_path / CREDENTIAL_FILE
    write_credential(target, "one")
    inode = target.stat().st_ino
    write_credential(target, "two")
    assert target.read_text() == "two"
    assert target.stat().st_ino != inode  # a new file renamed over the old one
    with pytest.raises(FileNotFoundError):
        write_credential(tmp_path / "missing" / CREDENTIAL_FILE, "x")
    assert sorted(os.listdir(tmp_path)) == [CREDENTIAL_FILE]


def test_the_mesh_variables_are_platform_variables(tmp_path: Path) -> None:
    config = make_config(tmp_path, extra_env={"COURTYARD_MESH_URL": "operator may not win"})
    spec = WorkloadSpec(
        app="web",
        revision=1,
        bundle=None,
        command=("app", "--credential=${COURTYARD_WORKLOAD_CREDENTIAL}"),
    )
    workload = {"COURTYARD_MESH_URL": MESH_URL, "COURTYARD_WORKLOAD_CREDENTIAL": "/w/x.jwt"}
    plan = launch_plan(
        spec,
        config,
        instance_id="web-1-aaaaaa",
        port=1,
        node_env={},
        python_dir="/py",
        workload=workload,
    )
    assert plan.argv == ("app", "--credential=/w/x.jwt")
    assert {k: plan.env[k] for k in workload} == workload
    check_spec(spec, config, workload)
    with pytest.raises(PlaceholderError):
        check_spec(spec, config)  # no issuer: nothing to point to


# -- the supervisor with real processes ------------------------------------------------------


async def test_the_file_exists_before_the_process_starts_and_goes_when_it_stops(
    supervisor: Supervisor,
    issuer: FakeIssuer,
    config: RuntimeConfig,
    tmp_path: Path,
    control: Path,
) -> None:
    await supervisor.apply(spec_of(app_bundle(tmp_path), control))
    (instance,) = supervisor.instances("web")
    seen = await get_json(instance.port)
    workdir = config.instances_dir / instance.id
    assert seen["at_start"] == {"token": issuer.issued[0], "mode": 0o600}
    assert seen["path"] == str(workdir / CREDENTIAL_FILE)
    assert seen["cwd"] == str(workdir)
    assert seen["mesh_url"] == MESH_URL
    assert seen["argv"][-1] == f"--mesh={MESH_URL}"  # usable as a placeholder too
    assert issuer.events == [("issue", "web", instance.id)]

    await supervisor.stop("web")
    assert issuer.events[-1] == ("release", "web", instance.id)
    assert issuer.live == {}


async def test_a_crash_revokes_and_the_restart_gets_a_new_credential(
    supervisor: Supervisor, issuer: FakeIssuer, tmp_path: Path, control: Path
) -> None:
    await supervisor.apply(spec_of(app_bundle(tmp_path), control))
    (instance,) = supervisor.instances("web")
    assert instance.pid is not None
    os.kill(instance.pid, signal.SIGKILL)
    await wait_until(
        lambda: (
            issuer.count("issue", instance.id) == 2
            and supervisor.app_state("web").ready_replicas == 1
        ),
        what="the restarted instance",
    )
    assert issuer.events == [
        ("issue", "web", instance.id),
        ("release", "web", instance.id),
        ("issue", "web", instance.id),
    ]
    assert issuer.live == {instance.id: [issuer.issued[1]]}
    (restarted,) = supervisor.instances("web")
    seen = await get_json(restarted.port)
    assert seen["at_start"]["token"] == issuer.issued[1]


async def test_a_rollout_releases_the_replaced_instance_and_remove_every_one(
    supervisor: Supervisor,
    issuer: FakeIssuer,
    traffic: RecordingTraffic,
    tmp_path: Path,
    control: Path,
) -> None:
    bundle = app_bundle(tmp_path)
    await supervisor.apply(spec_of(bundle, control, replicas=2))
    old = {i.id for i in supervisor.instances("web")}
    traffic.watch = lambda: set(issuer.live)
    await supervisor.apply(spec_of(bundle, control, replicas=2, revision=2))
    new = {i.id for i in supervisor.instances("web")}
    assert not old & new
    assert set(issuer.live) == new
    # While the old instances drain (out of the endpoints), they can still finish their
    # requests' mesh calls: released only once stopped.
    switch = next(n for n, ids in enumerate(traffic.ids("web")) if set(ids) == new)
    assert traffic.watched[switch] == old | new
    assert {i for what, _, i in issuer.events if what == "release"} == old
    await supervisor.remove("web")
    assert issuer.live == {}


async def test_a_credential_that_cannot_be_issued_fails_the_start(
    supervisor: Supervisor, issuer: FakeIssuer, tmp_path: Path, control: Path
) -> None:
    issuer.failures = 1
    with pytest.raises(RolloutFailed, match="could not get its workload credential"):
        await supervisor.apply(spec_of(app_bundle(tmp_path), control))
    (instance,) = supervisor.instances("web")
    assert any("the key ring is unavailable" in line for line in log_lines(supervisor))
    # Kept under restart policy, the next start gets one.
    await wait_until(lambda: supervisor.app_state("web").ready_replicas == 1, what="recovery")
    assert issuer.count("issue", instance.id) == 1


async def test_apps_may_not_set_the_mesh_variables(
    supervisor: Supervisor, tmp_path: Path, control: Path
) -> None:
    bundle = app_bundle(tmp_path)
    for key in ("COURTYARD_MESH_URL", "COURTYARD_WORKLOAD_CREDENTIAL"):
        with pytest.raises(InvalidSpec, match=key):
            await supervisor.apply(spec_of(bundle, control, env={key: "mine"}))


async def test_without_an_issuer_there_is_no_credential(tmp_path: Path, control: Path) -> None:
    traffic = RecordingTraffic()
    sup = Supervisor(make_config(tmp_path / "data", mesh_url=MESH_URL), traffic)
    traffic.supervisor = sup
    await sup.start()
    try:
        await sup.apply(spec_of(app_bundle(tmp_path), control, command=("python", "app.py")))
        (instance,) = sup.instances("web")
        seen = await get_json(instance.port)
        assert seen["path"] is None and seen["mesh_url"] is None
        assert seen["at_start"] is None
    finally:
        await sup.aclose()


async def test_the_file_is_rewritten_before_expiry_on_the_supervisor_clock(
    tmp_path: Path, control: Path
) -> None:
    clock = FakeClock()
    issuer = FakeIssuer(clock)
    traffic = RecordingTraffic()
    sup = Supervisor(
        make_config(tmp_path / "data", mesh_url=MESH_URL),
        traffic,
        clock=clock,
        credentials=issuer,
    )
    traffic.supervisor = sup
    await sup.start()
    try:
        # Liveness checks far apart, so a big step of the clock does not time them out.
        spec = spec_of(app_bundle(tmp_path), control, health_interval=100_000.0)
        await pumped(clock, sup.apply(spec))
        (instance,) = sup.instances("web")
        assert (await get_json(instance.port))["now"]["token"] == issuer.issued[0]
        await clock.advance(399)
        assert len(issuer.issued) == 1
        await clock.advance(1)
        assert len(issuer.issued) == 2
        seen = await get_json(instance.port)
        assert seen["now"] == {"token": issuer.issued[1], "mode": 0o600}
        assert seen["at_start"]["token"] == issuer.issued[0]
        await clock.advance(400)
        assert (await get_json(instance.port))["now"]["token"] == issuer.issued[2]
        assert sup.instances("web")[0].restarts == 0  # the same process all along
        await pumped(clock, sup.stop("web"))
        assert issuer.events[-1] == ("release", "web", instance.id)
        await clock.advance(10_000)
        assert len(issuer.issued) == 3
    finally:
        await pumped(clock, sup.aclose())
        await wait_until(no_children, timeout=5, what="every child process to be gone")


def log_lines(supervisor: Supervisor) -> list[str]:
    """Every line of the app's logs (the supervisor's own notes included)."""
    return [line for path in supervisor.log_files("web") for line in path.read_text().splitlines()]
