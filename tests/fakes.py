"""Fakes of our own seams shared by several test packages (injected, never patched in)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from courtyard.audit import AuditEvent, AuditReceipt
from courtyard.contracts import GatewaySnapshot, UpstreamInstance
from courtyard.runtime import AppNotRunning, AppState, InstanceStatus, RolloutFailed, WorkloadSpec


class RecordingPublisher:
    def __init__(self) -> None:
        self.snapshots: list[GatewaySnapshot] = []

    async def publish(self, snapshot: GatewaySnapshot) -> None:
        self.snapshots.append(snapshot)

    async def wait_drained(self, version: int, timeout: float) -> bool:
        return True


class FakeRuntime:
    """Applies specs at once; can be told to fail the next rollout."""

    def __init__(self) -> None:
        self.specs: dict[str, WorkloadSpec] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_next = False
        self.gate: asyncio.Event | None = None

    async def apply(self, spec: WorkloadSpec) -> None:
        self.calls.append(("apply", f"{spec.app}@{spec.revision}"))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RolloutFailed(spec.app, spec.revision, "not ready")
        self.specs[spec.app] = spec

    async def restart(self, app: str) -> None:
        self.calls.append(("restart", app))

    async def stop(self, app: str) -> None:
        self.calls.append(("stop", app))
        self.specs.pop(app, None)

    async def remove(self, app: str) -> None:
        self.calls.append(("remove", app))
        if self.specs.pop(app, None) is None:
            raise AppNotRunning(app)

    def app_state(self, app: str) -> AppState:
        spec = self.specs.get(app)
        if spec is None:
            raise AppNotRunning(app)
        return AppState(app, spec.revision, "running", spec.replicas, spec.replicas, 0)

    def instances(self, app: str | None = None) -> list[InstanceStatus]:
        return []

    def log_files(self, app: str) -> list[Path]:
        return []

    def endpoints(self) -> dict[str, list[UpstreamInstance]]:
        return {
            name: [UpstreamInstance(id=f"{name}-1", host="127.0.0.1", port=1, revision=s.revision)]
            for name, s in self.specs.items()
        }


class RecordingAudit:
    """An audit recorder that keeps events in a list (the real log is tested on its own)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    async def record(self, event: AuditEvent) -> AuditReceipt:
        self.events.append(event)
        return AuditReceipt(seq=len(self.events), entry_hash="0" * 64)

    def actions(self) -> list[tuple[str, str, str]]:
        return [(e.action, e.target, e.outcome) for e in self.events]
