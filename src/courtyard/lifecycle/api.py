"""REST API for apps: deploy, list, status, restart, rollback, scale, stop, remove and logs
(``/api/v1/apps``)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from courtyard.audit import Actor
from courtyard.catalog import App
from courtyard.lifecycle._errors import DeployRefused
from courtyard.lifecycle._lifecycle import Caller, Deployment, Lifecycle, Rollout
from courtyard.runtime import parse_log_line

MAX_UPLOAD_BYTES = 64 * 1024 * 1024
_TOO_LARGE = f"the upload is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MiB"
_BUNDLE_TYPES = {"application/gzip", "application/x-gzip", "application/x-tar+gzip"}
_MANIFEST_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "application/json"}


_ANONYMOUS = Actor(kind="user", id="anonymous")


def caller_of(request: Request) -> Caller:
    """Who is calling, as the authenticating middleware put it in ``request.state.actor``."""
    actor = getattr(request.state, "actor", None)
    traceparent = request.headers.get("traceparent", "")
    parts = traceparent.split("-")
    trace_id = parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None
    return Caller(
        actor=actor if isinstance(actor, Actor) else _ANONYMOUS,
        request_id=request.headers.get("x-request-id"),
        trace_id=trace_id,
    )


def rollout_document(rollout: Rollout | None) -> dict[str, Any] | None:
    if rollout is None:
        return None
    return {
        "revision": rollout.revision,
        "state": rollout.state,
        "message": rollout.message,
        "startedAt": rollout.started_at,
        "finishedAt": rollout.finished_at,
    }


def app_document(lifecycle: Lifecycle, app: App, *, instances: bool = False) -> dict[str, Any]:
    """One app as the API shows it: catalog facts joined with runtime state."""
    state = lifecycle.runtime_state(app)
    doc: dict[str, Any] = {
        "name": app.name,
        "kind": app.kind,
        "title": app.title,
        "owner": app.owner,
        "businessOwner": app.business_owner,
        "stage": app.stage,
        "tags": list(app.tags),
        "revision": app.current_revision,
        "desiredState": app.desired_state,
        "routes": [r.path for r in app.manifest.spec.routes],
        "provides": list(app.manifest.spec.provides),
        "createdAt": app.created_at,
        "updatedAt": app.updated_at,
        "phase": state.phase if state is not None else _phase_without_runtime(app),
        "readyReplicas": state.ready_replicas if state is not None else 0,
        "desiredReplicas": state.desired_replicas if state is not None else 0,
        "restarts": state.restarts if state is not None else 0,
        "message": state.message if state is not None else "",
        "servingRevision": state.revision if state is not None else None,
        "rollout": rollout_document(lifecycle.rollout_of(app.name)),
    }
    if instances:
        doc["instances"] = instance_documents(lifecycle, app) if state is not None else []
    return doc


def instance_documents(lifecycle: Lifecycle, app: App) -> list[dict[str, Any]]:
    """The app's instances as the API shows them."""
    return [
        {
            "id": i.id,
            "revision": i.revision,
            "pid": i.pid,
            "port": i.port,
            "state": i.state,
            "restarts": i.restarts,
            "startedAt": i.started_at,
            "lastExit": i.last_exit,
            "limits": i.limits,
        }
        for i in lifecycle.supervisor.instances(app.name)
    ]


def _phase_without_runtime(app: App) -> str:
    if app.kind == "Interface" or app.manifest.spec.run is None:
        return "registered"
    return "stopped" if app.desired_state == "stopped" else "pending"


def _deployment_document(lifecycle: Lifecycle, deployment: Deployment) -> dict[str, Any]:
    registration = deployment.registration
    return {
        "app": app_document(lifecycle, registration.app),
        "revision": {
            "number": registration.revision.number,
            "digest": registration.revision.digest,
            "createdAt": registration.revision.created_at,
        },
        "created": registration.created,
        "rollout": rollout_document(deployment.rollout),
    }


class RollbackBody(BaseModel):
    """Which revision to make current (default: the one before the current one)."""

    model_config = ConfigDict(extra="forbid")
    revision: Annotated[int | None, Field(ge=1)] = None


class ScaleBody(BaseModel):
    """How many instances the app should run."""

    model_config = ConfigDict(extra="forbid")
    replicas: Annotated[int, Field(ge=1, le=64)]


def router(lifecycle: Lifecycle) -> APIRouter:
    """The ``/api/v1/apps`` routes over one lifecycle service."""
    api = APIRouter(prefix="/api/v1", tags=["apps"])

    @api.post("/apps", status_code=201, summary="Deploy an app bundle or register a manifest")
    async def deploy(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await _read_body(request)
        if content_type in _BUNDLE_TYPES:
            deployment = await lifecycle.deploy_bundle(body, caller_of(request))
        elif content_type in _MANIFEST_TYPES:
            deployment = await lifecycle.deploy_manifest(body, caller=caller_of(request))
        else:
            raise DeployRefused(
                "send a gzip tar of the app folder (Content-Type: application/gzip) or a "
                "manifest (Content-Type: application/yaml or application/json)"
            )
        status = 201 if deployment.registration.created else 200
        return JSONResponse(_deployment_document(lifecycle, deployment), status_code=status)

    @api.get("/apps", summary="List apps with their state")
    async def list_apps() -> list[dict[str, Any]]:
        return [app_document(lifecycle, app) for app in await lifecycle.catalog.list()]

    @api.get("/apps/{name}", summary="One app with its instances")
    async def get_app(name: str) -> dict[str, Any]:
        return app_document(lifecycle, await lifecycle.catalog.get(name), instances=True)

    @api.get("/apps/{name}/instances", summary="The app's instances on this node")
    async def instances(name: str) -> list[dict[str, Any]]:
        return instance_documents(lifecycle, await lifecycle.catalog.get(name))

    @api.post(
        "/apps/{name}/restart", status_code=202, summary="Rolling restart (starts a stopped app)"
    )
    async def restart(name: str, request: Request) -> dict[str, Any]:
        rollout = await lifecycle.restart(name, caller_of(request))
        return {"app": name, "rollout": rollout_document(rollout)}

    @api.post(
        "/apps/{name}/rollback",
        status_code=202,
        summary="Make an earlier revision current again (default: the one before) and roll out",
    )
    async def rollback(name: str, request: Request, body: RollbackBody | None = None) -> Any:
        to = body.revision if body is not None else None
        rollout = await lifecycle.rollback(name, to, caller_of(request))
        return {"app": name, "rollout": rollout_document(rollout)}

    @api.post(
        "/apps/{name}/scale",
        summary="Run this many instances (a new revision with spec.run.replicas changed)",
    )
    async def scale(name: str, request: Request, body: ScaleBody) -> JSONResponse:
        deployment = await lifecycle.scale(name, body.replicas, caller_of(request))
        status = 201 if deployment.registration.created else 200
        return JSONResponse(_deployment_document(lifecycle, deployment), status_code=status)

    @api.post("/apps/{name}/stop", summary="Stop every instance; the app stays registered")
    async def stop(name: str, request: Request) -> dict[str, Any]:
        await lifecycle.stop(name, caller_of(request))
        return app_document(lifecycle, await lifecycle.catalog.get(name))

    @api.delete(
        "/apps/{name}", status_code=204, summary="Stop an app and remove it from the catalog"
    )
    async def remove(name: str, request: Request) -> None:
        await lifecycle.remove(name, caller_of(request))

    @api.get("/apps/{name}/logs", summary="The app's instance logs (text), optionally followed")
    async def logs(
        name: str,
        tail: Annotated[int, Query(ge=0, le=100_000)] = 100,
        follow: bool = False,
        grep: Annotated[str | None, Query(max_length=500)] = None,
        since: Annotated[str | None, Query(max_length=64)] = None,
        timestamps: bool = False,
    ) -> Any:
        await lifecycle.catalog.get(name)  # 404 for an unknown app
        try:
            wanted = LogFilter.of(grep, since, time.time())
        except ValueError as exc:
            return _problem(400, "Bad log query", str(exc))
        # Log files outlive instances: a stopped app's logs stay readable, and those of
        # earlier revisions too while they are on disk.
        return StreamingResponse(
            _stream_logs(lifecycle, name, tail, follow, wanted, timestamps),
            media_type="text/plain; charset=utf-8",
        )

    return api


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
        raise DeployRefused(_TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise DeployRefused(_TOO_LARGE)
        chunks.append(chunk)
    if size == 0:
        raise DeployRefused("the request has no body: send a bundle or a manifest")
    return b"".join(chunks)


_SINCE = re.compile(r"(\d+(?:\.\d+)?)(s|m|h|d)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class LogFilter:
    """Which stored lines to show: matching a regex, written since a time."""

    pattern: re.Pattern[bytes] | None = None
    since: float | None = None

    @classmethod
    def of(cls, grep: str | None, since: str | None, now: float) -> LogFilter:
        pattern = None
        if grep:
            try:
                pattern = re.compile(grep.encode())
            except re.error as exc:
                raise ValueError(f"grep: not a regular expression: {exc}") from None
        start = None
        if since:
            if match := _SINCE.fullmatch(since.strip()):
                start = now - float(match[1]) * _UNITS[match[2]]
            else:
                try:
                    when = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
                except ValueError:
                    raise ValueError(
                        f'since: expected a duration like "10m", "2h", "1d" or an RFC 3339 time, '
                        f"got {since!r}"
                    ) from None
                if when.tzinfo is None:
                    raise ValueError(f"since: {since!r} needs a time zone (Z or +hh:mm)")
                start = when.timestamp()
        return cls(pattern, start)

    def show(self, line: bytes, timestamps: bool) -> bytes | None:
        """The line as shown (its stamp removed unless ``timestamps``), or None to skip it."""
        written, content = parse_log_line(line)
        if self.since is not None and (written is None or written < self.since):
            return None
        if self.pattern is not None and self.pattern.search(content) is None:
            return None
        if not content.endswith(b"\n"):
            content += b"\n"
        if timestamps and written is not None:
            return line.split(b" ", 1)[0] + b" " + content  # the RFC 3339 stamp first
        return content


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def _tail_lines(files: list[Path], count: int, wanted: LogFilter, timestamps: bool) -> list[bytes]:
    lines: list[bytes] = []
    for path in reversed(files):
        try:
            data = path.read_bytes()
        except OSError:
            continue
        shown = [wanted.show(line, timestamps) for line in data.splitlines(keepends=True)]
        lines[:0] = [line for line in shown if line is not None]
        if len(lines) >= count:
            break
    return lines[-count:] if count else []


async def _stream_logs(
    lifecycle: Lifecycle,
    name: str,
    tail: int,
    follow: bool,
    wanted: LogFilter | None = None,
    timestamps: bool = False,
) -> AsyncIterator[bytes]:
    wanted = wanted or LogFilter()
    files = lifecycle.supervisor.log_files(name)
    for line in _tail_lines(files, tail, wanted, timestamps):
        yield line
    if not follow:
        return
    # Follow every instance's current log file, picking up new instances as they start.
    offsets = {path: path.stat().st_size for path in files if path.exists()}
    partial: dict[Path, bytes] = {}
    while True:
        await asyncio.sleep(0.25)
        for path in lifecycle.supervisor.log_files(name):
            try:
                size = path.stat().st_size
            except OSError:
                continue
            start = offsets.get(path, 0)
            if size < start:  # rotated: start over
                start = 0
            if size > start:
                with path.open("rb") as handle:
                    handle.seek(start)
                    data = partial.pop(path, b"") + handle.read(size - start)
                offsets[path] = size
                cut = data.rfind(b"\n") + 1
                if cut < len(data):
                    partial[path] = data[cut:]
                shown = [wanted.show(line, timestamps) for line in data[:cut].splitlines(True)]
                chunk = b"".join(line for line in shown if line is not None)
                if chunk:
                    yield chunk
