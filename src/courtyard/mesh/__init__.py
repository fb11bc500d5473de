"""The service mesh's control-plane side: workload identities for app instances, the durable
event bus, and the dependency graph. The mesh listener itself runs in the gateway workers
(courtyard.gateway), which get everything they need through the snapshot and credentials.
"""

from courtyard.mesh._graph import (
    FORMATS,
    GraphDocument,
    GraphEdge,
    GraphNode,
    build_graph,
    graph_from_document,
    mesh_policy,
    policies_of,
    render,
    render_dot,
    render_mermaid,
)
from courtyard.mesh._graph_routes import graph_router

__all__ = [
    "FORMATS",
    "GraphDocument",
    "GraphEdge",
    "GraphNode",
    "build_graph",
    "graph_from_document",
    "graph_router",
    "mesh_policy",
    "policies_of",
    "render",
    "render_dot",
    "render_mermaid",
]
