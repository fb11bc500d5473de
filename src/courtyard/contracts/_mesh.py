"""Service-to-service calls and events: what the mesh listener knows of each app, the headers
of a mesh call, and the one rule that decides whether a call may happen (default deny).

Pure and stdlib only: the gateway workers evaluate it per call, the control plane evaluates
it per event delivery and for ``courtyard graph``, so they can never disagree.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TypedDict

MESH_AUDIENCE = "courtyard-mesh"  # `aud` of every workload credential
DEFAULT_TRUST_DOMAIN = "courtyard.local"
ON_BEHALF_OF_HEADER = "Courtyard-On-Behalf-Of"  # the end user's assertion the caller received
DEADLINE_HEADER = "Courtyard-Deadline"  # absolute deadline, milliseconds since the epoch
EVENTS_PREFIX = "/_events/"  # {MESH}/_events/<topic>: publish an event


class MeshCall(TypedDict):
    """A call an app declares it makes (manifest ``consumes``)."""

    service: str
    paths: list[str]  # globs: "*" one path segment, "**" any number
    methods: list[str]  # upper case, or "*"


class MeshAccept(TypedDict):
    """A caller an app accepts (manifest ``accepts``)."""

    caller: str  # app name, or "*" for any caller that declared the call
    paths: list[str]
    methods: list[str]


class Subscription(TypedDict):
    topic: str
    handler: str  # path in the subscriber


class MeshPolicy(TypedDict):
    """One app's side of the mesh, from its manifest."""

    consumes: list[MeshCall]
    accepts: list[MeshAccept] | None  # None: every caller that declares the call
    publishes: list[str]
    subscribes: list[Subscription]


def spiffe_id(trust_domain: str, app: str) -> str:
    """The workload identity of ``app`` (SPIFFE ID, spiffe.io/docs/latest/spiffe-about)."""
    return f"spiffe://{trust_domain}/app/{app}"


def app_of_spiffe_id(value: str, trust_domain: str) -> str | None:
    """The app a SPIFFE ID of this trust domain names, or None."""
    prefix = f"spiffe://{trust_domain}/app/"
    if not value.startswith(prefix):
        return None
    name = value[len(prefix) :]
    return name if name and "/" not in name else None


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> re.Pattern[str]:
    parts = []
    for piece in re.split(r"(\*\*|\*)", pattern):
        if piece == "**":
            parts.append(".*")
        elif piece == "*":
            parts.append("[^/]*")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def path_matches(patterns: list[str], path: str) -> bool:
    """Whether ``path`` matches one of the globs (``/entries/**`` also matches ``/entries``)."""
    for pattern in patterns:
        if _glob(pattern).fullmatch(path):
            return True
        if pattern.endswith("/**") and path == pattern[:-3]:
            return True
    return False


def method_matches(methods: list[str], method: str) -> bool:
    return "*" in methods or method.upper() in methods


def call_refusal(
    caller: str,
    caller_policy: MeshPolicy | None,
    target: str,
    target_policy: MeshPolicy | None,
    method: str,
    path: str,
) -> str | None:
    """Why ``caller`` may not call ``method path`` on ``target``, or None when it may.

    Default deny: the caller must declare the call in ``consumes`` (service, path glob,
    method), and the target must not refuse it: when it lists ``accepts``, one entry must
    name the caller (or ``*``) with a matching path and method.
    """
    if caller_policy is None:
        return f"{caller} is not in the catalog"
    if target_policy is None:
        return f"{target} is not in the catalog"
    declared = next((c for c in caller_policy["consumes"] if c["service"] == target), None)
    if declared is None:
        return f"{caller} does not declare calls to {target} (consumes)"
    if not method_matches(declared["methods"], method):
        return f"{caller} does not declare {method} calls to {target}"
    if not path_matches(declared["paths"], path):
        return f"{caller} does not declare calls to {target} {path}"
    accepts = target_policy["accepts"]
    if accepts is None:
        return None
    for rule in accepts:
        if (
            rule["caller"] in ("*", caller)
            and method_matches(rule["methods"], method)
            and path_matches(rule["paths"], path)
        ):
            return None
    return f"{target} does not accept {method} {path} from {caller} (accepts)"


def publish_refusal(publisher: str, policy: MeshPolicy | None, topic: str) -> str | None:
    """Why ``publisher`` may not publish to ``topic``, or None (it must declare it)."""
    if policy is None:
        return f"{publisher} is not in the catalog"
    if topic not in policy["publishes"]:
        return f"{publisher} does not declare topic {topic} (publishes)"
    return None


def subscribers_of(topic: str, policies: dict[str, MeshPolicy]) -> list[tuple[str, str]]:
    """Every (app, handler path) that subscribes to ``topic``, sorted by app."""
    found = []
    for app, policy in policies.items():
        for subscription in policy["subscribes"]:
            if subscription["topic"] == topic:
                found.append((app, subscription["handler"]))
    return sorted(found)
