"""Checking a GatewaySnapshot's shape before it replaces the routing table, and loading one
from a JSON file (the worker's static mode for benchmarks and tests)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

from courtyard.contracts import GatewayAuth, GatewaySnapshot
from courtyard.gateway._assertions import MAX_TTL, signing_key
from courtyard.gateway._config import InvalidSnapshot


def _fail(where: str, expected: str) -> InvalidSnapshot:
    return InvalidSnapshot(f"snapshot {where}: expected {expected}")


def _number(value: Any, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(where, "a number")
    if value <= 0:
        raise _fail(where, "a positive number")


def check_snapshot(snapshot: Any) -> GatewaySnapshot:
    """Return ``snapshot`` if it has the GatewaySnapshot shape, else raise InvalidSnapshot."""
    if not isinstance(snapshot, dict):
        raise _fail("", "a JSON object")
    version = snapshot.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise _fail("version", "a non-negative integer")
    routes = snapshot.get("routes")
    if not isinstance(routes, list):
        raise _fail("routes", "a list")
    for index, route in enumerate(routes):
        where = f"routes[{index}]"
        if not isinstance(route, dict):
            raise _fail(where, "an object")
        if not isinstance(route.get("app"), str):
            raise _fail(f"{where}.app", "a string")
        path = route.get("path")
        if not isinstance(path, str) or not path.startswith("/") or not path.endswith("/"):
            raise _fail(f"{where}.path", "a path starting and ending with '/'")
        if not path.isascii():
            raise _fail(f"{where}.path", "an ASCII path")
        host = route.get("host")
        if host is not None and (not isinstance(host, str) or not host or not host.isascii()):
            raise _fail(f"{where}.host", "null or an ASCII host name")
        if not isinstance(route.get("strip_prefix"), bool):
            raise _fail(f"{where}.strip_prefix", "true or false")
        limit = route.get("max_body_bytes")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise _fail(f"{where}.max_body_bytes", "a non-negative integer")
        _number(route.get("connect_timeout"), f"{where}.connect_timeout")
        _number(route.get("response_timeout"), f"{where}.response_timeout")
    apps = snapshot.get("apps")
    if not isinstance(apps, dict):
        raise _fail("apps", "an object")
    for name, app in apps.items():
        where = f"apps.{name}"
        if not isinstance(app, dict) or not isinstance(app.get("instances"), list):
            raise _fail(where, "an object with an instances list")
        for index, instance in enumerate(app["instances"]):
            spot = f"{where}.instances[{index}]"
            if not isinstance(instance, dict):
                raise _fail(spot, "an object")
            if not isinstance(instance.get("id"), str) or not isinstance(instance.get("host"), str):
                raise _fail(spot, "string id and host")
            port = instance.get("port")
            if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
                raise _fail(f"{spot}.port", "a TCP port")
            if isinstance(instance.get("revision"), bool) or not isinstance(
                instance.get("revision"), int
            ):
                raise _fail(f"{spot}.revision", "an integer")
        if "access" in app:
            _check_access(app["access"], f"{where}.access")
        if "mesh" in app:
            _check_mesh_policy(app["mesh"], f"{where}.mesh")
    auth = snapshot.get("auth")
    if auth is not None:
        _check_auth(auth)
    if "mesh" in snapshot:
        _check_mesh_settings(snapshot["mesh"])
    return cast(GatewaySnapshot, snapshot)


def _check_access(policy: Any, where: str) -> None:
    if not isinstance(policy, dict) or not isinstance(policy.get("public"), bool):
        raise _fail(where, "an object with public true or false")
    allow = policy.get("allow")
    if not isinstance(allow, list) or not all(isinstance(rule, str) for rule in allow):
        raise _fail(f"{where}.allow", "a list of strings")


def _strings(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _fail(where, "a list of strings")


def _paths(value: Any, where: str) -> None:
    _strings(value, where)
    if not all(item.startswith("/") for item in value):
        raise _fail(where, "a list of paths starting with '/'")


def _check_mesh_policy(policy: Any, where: str) -> None:
    """contracts.MeshPolicy: consumes, accepts (or null), publishes, subscribes."""
    if not isinstance(policy, dict):
        raise _fail(where, "an object")
    consumes = policy.get("consumes")
    if not isinstance(consumes, list):
        raise _fail(f"{where}.consumes", "a list")
    for index, call in enumerate(consumes):
        spot = f"{where}.consumes[{index}]"
        if not isinstance(call, dict) or not isinstance(call.get("service"), str):
            raise _fail(spot, "an object with a service name")
        _paths(call.get("paths"), f"{spot}.paths")
        _strings(call.get("methods"), f"{spot}.methods")
    accepts = policy.get("accepts", ...)
    if accepts is ...:
        raise _fail(f"{where}.accepts", "null or a list")
    if accepts is not None:
        if not isinstance(accepts, list):
            raise _fail(f"{where}.accepts", "null or a list")
        for index, rule in enumerate(accepts):
            spot = f"{where}.accepts[{index}]"
            if not isinstance(rule, dict) or not isinstance(rule.get("caller"), str):
                raise _fail(spot, "an object with a caller name")
            _paths(rule.get("paths"), f"{spot}.paths")
            _strings(rule.get("methods"), f"{spot}.methods")
    _strings(policy.get("publishes"), f"{where}.publishes")
    subscribes = policy.get("subscribes")
    if not isinstance(subscribes, list):
        raise _fail(f"{where}.subscribes", "a list")
    for index, item in enumerate(subscribes):
        spot = f"{where}.subscribes[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("topic"), str):
            raise _fail(spot, "an object with a topic")
        handler = item.get("handler")
        if not isinstance(handler, str) or not handler.startswith("/"):
            raise _fail(f"{spot}.handler", "a path starting with '/'")


def _check_mesh_settings(settings: Any) -> None:
    """contracts.MeshSettings."""
    if not isinstance(settings, dict):
        raise _fail("mesh", "an object")
    for name in ("trust_domain", "events_app"):
        value = settings.get(name)
        if not isinstance(value, str) or not value or "/" in value:
            raise _fail(f"mesh.{name}", "a non-empty name without '/'")
    path = settings.get("events_path")
    if not isinstance(path, str) or not path.startswith("/") or not path.endswith("/"):
        raise _fail("mesh.events_path", "a path starting and ending with '/'")
    if not path.isascii():
        raise _fail("mesh.events_path", "an ASCII path")


def _check_auth(auth: Any) -> None:
    if not isinstance(auth, dict):
        raise _fail("auth", "null or an object")
    for name in ("issuer", "login_path", "session_cookie"):
        if not isinstance(auth.get(name), str) or not auth[name]:
            raise _fail(f"auth.{name}", "a non-empty string")
    if not auth["login_path"].startswith("/"):
        raise _fail("auth.login_path", "a path starting with '/'")
    jwks = auth.get("jwks")
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise _fail("auth.jwks", "a JWKS object with a keys list")
    ttl = auth.get("assertion_ttl")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL:
        raise _fail("auth.assertion_ttl", f"an integer from 1 to {MAX_TTL}")
    signing_key(cast(GatewayAuth, auth))  # raises InvalidSnapshot


def load_snapshot(path: str | Path) -> GatewaySnapshot:
    """Read and check a GatewaySnapshot JSON file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidSnapshot(f"cannot read snapshot {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise InvalidSnapshot(f"snapshot {path} is not JSON: {exc}") from exc
    return check_snapshot(data)
