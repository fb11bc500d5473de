"""The configuration snapshot the control plane pushes to every gateway worker.

A snapshot is complete and immutable: a worker swaps its whole routing table for the new one
in a single assignment, so a request sees either the old table or the new one, never a mix.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict

from courtyard.contracts._identity import AccessPolicy, GatewayAuth
from courtyard.contracts._mesh import MeshPolicy

# Upper bounds (seconds) of the gateway's latency histogram, as Prometheus `le` labels.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class UpstreamInstance(TypedDict):
    """One ready instance of an app: where the gateway may send its traffic."""

    id: str  # unique in the fleet, e.g. "expenses-3-a1b2c3"
    host: str  # loopback address
    port: int
    revision: int


class AppUpstream(TypedDict):
    """Everything the gateway knows of one app's backends."""

    name: str
    instances: list[UpstreamInstance]  # ready instances only; empty means 503
    access: AccessPolicy  # who may open it; evaluated by the gateway, default deny
    mesh: NotRequired[MeshPolicy]  # its calls and events through the mesh (default: none)


class Route(TypedDict):
    """One routing rule: requests whose normalized path starts with ``path`` go to ``app``.

    The longest matching ``path`` wins; a rule with ``host`` set matches only that host (and
    beats a host-less rule of the same length).
    """

    app: str
    path: str  # prefix; starts and ends with "/"
    host: str | None  # lower-case host without port, or None for any host
    strip_prefix: bool  # remove the prefix (keeping one "/") and send it as X-Forwarded-Prefix
    max_body_bytes: int  # request bodies above this get 413
    connect_timeout: float  # seconds to open a connection to an instance
    response_timeout: float  # seconds from the request sent to the response head received


class GatewaySnapshot(TypedDict):
    """The whole data-plane configuration at one version."""

    version: int  # strictly increasing per control plane run
    routes: list[Route]
    apps: dict[str, AppUpstream]
    auth: GatewayAuth | None  # None: no identity provider yet, so only public apps are served
    mesh: NotRequired[MeshSettings]  # absent: no mesh listener


class MeshSettings(TypedDict):
    """The mesh listener's settings (it runs in every gateway worker, on loopback)."""

    trust_domain: str  # SPIFFE trust domain of workload identities
    events_app: str  # the built-in app that stores published events (the control plane)
    traces_path: NotRequired[str]  # where that app takes the apps' spans (absent: no traces)
    events_path: str  # where in it: events_path + topic


def empty_snapshot() -> GatewaySnapshot:
    """A snapshot that routes nothing (what a worker starts with)."""
    return {"version": 0, "routes": [], "apps": {}, "auth": None}
