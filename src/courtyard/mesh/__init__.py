"""The service mesh's control-plane side: workload identities for app instances, the durable
event bus, and the dependency graph. The mesh listener itself runs in the gateway workers
(courtyard.gateway), which get everything they need through the snapshot and credentials.

Error tree::

    CourtyardError
    └── EventError
        ├── EventIdTaken
        ├── EventInvalid
        └── PublishRefused
"""

from courtyard.mesh._events import (
    EventBus,
    EventBusConfig,
    backoff_delay,
    build_cloudevent,
)
from courtyard.mesh._events_errors import EventError, EventIdTaken, EventInvalid, PublishRefused
from courtyard.mesh._events_http import HttpMeshSender, IdentityAssertionVerifier
from courtyard.mesh._events_sql import SqlEventStore
from courtyard.mesh._events_store import EventStore, MemoryEventStore
from courtyard.mesh._graph import (
    FORMATS,
    GraphDocument,
    GraphEdge,
    GraphNode,
    build_graph,
    graph_from_document,
    policies_of,
    render,
    render_dot,
    render_mermaid,
)
from courtyard.mesh._graph_routes import graph_router
from courtyard.mesh._workloads import (
    MAX_LIFETIME,
    HeldCredential,
    WorkloadConfig,
    WorkloadIdentities,
    credential_key,
)

__all__ = [
    "FORMATS",
    "MAX_LIFETIME",
    "EventBus",
    "EventBusConfig",
    "EventError",
    "EventIdTaken",
    "EventInvalid",
    "EventStore",
    "GraphDocument",
    "GraphEdge",
    "GraphNode",
    "HeldCredential",
    "HttpMeshSender",
    "IdentityAssertionVerifier",
    "MemoryEventStore",
    "PublishRefused",
    "SqlEventStore",
    "WorkloadConfig",
    "WorkloadIdentities",
    "backoff_delay",
    "build_cloudevent",
    "build_graph",
    "credential_key",
    "graph_from_document",
    "graph_router",
    "policies_of",
    "render",
    "render_dot",
    "render_mermaid",
]
