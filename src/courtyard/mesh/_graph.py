"""The fleet's dependency graph: which app calls which, who publishes and who receives each
topic, as the manifests declare it, marked with what the mesh has actually seen used.

Pure: built from the apps' mesh policies and the set of edges the gateway workers reported
(``"caller>target"``, ``"caller>_events/<topic>"``), rendered as JSON, Mermaid or Graphviz dot.
``courtyard graph`` and ``GET /api/v1/graph`` show it, so a dependency nobody uses, a declared
call the target refuses, or traffic nobody declared stand out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Literal, TypedDict

from courtyard.catalog import App
from courtyard.contracts import (
    MeshCall,
    MeshPolicy,
    method_matches,
    path_matches,
)
from courtyard.lifecycle import mesh_policy

__all__ = [
    "EVENTS_APP",
    "FORMATS",
    "GraphDocument",
    "GraphEdge",
    "GraphFormat",
    "GraphNode",
    "build_graph",
    "graph_from_document",
    "is_refused",
    "policies_of",
    "render",
    "render_dot",
    "render_mermaid",
]

EVENTS_APP = "courtyard"  # the platform's own workload: it delivers every event
EVENTS_SERVICE = "_events"  # "<caller>>_events/<topic>": a publish the mesh forwarded
FORMATS = ("json", "mermaid", "dot")

EdgeKind = Literal["call", "publish", "subscribe"]
NodeKind = Literal["app", "topic"]
GraphFormat = Literal["json", "mermaid", "dot"]


class GraphNode(TypedDict):
    name: str
    kind: NodeKind
    in_catalog: bool  # False: an app (or topic) that appears only in traffic the mesh saw


# "from" is a keyword, hence the functional form: the document is the API's JSON as it is.
GraphEdge = TypedDict(
    "GraphEdge",
    {
        "from": str,
        "to": str,
        "kind": EdgeKind,  # call: app -> app; publish: app -> topic; subscribe: topic -> app
        "declared": bool,  # in the manifests
        "refused_by_target": bool,  # a declared call the target's ``accepts`` never admits
        "seen": bool,  # the mesh forwarded it since the node started
    },
)


class GraphDocument(TypedDict):
    nodes: list[GraphNode]
    edges: list[GraphEdge]


def policies_of(apps: Iterable[App]) -> dict[str, MeshPolicy]:
    """Every catalog app's mesh policy, by name."""
    return {app.name: mesh_policy(app.manifest) for app in apps}


def _example(pattern: str) -> str:
    """A concrete path the glob ``pattern`` matches ("*" and "**" become one segment)."""
    return re.sub(r"\*\*|\*", "x", pattern)


def _overlaps(left: list[str], right: list[str]) -> bool:
    """Whether two lists of path globs can match a common path (tested on examples)."""
    return any(path_matches(right, _example(p)) for p in left) or any(
        path_matches(left, _example(p)) for p in right
    )


def _methods_overlap(left: list[str], right: list[str]) -> bool:
    return "*" in left or "*" in right or any(method_matches(right, m) for m in left)


def is_refused(caller: str, call: MeshCall, target: MeshPolicy | None) -> bool:
    """Whether the target's ``accepts`` admits none of the requests ``call`` declares, so
    every such call would be refused (``contracts.call_refusal``'s second half)."""
    if target is None or target["accepts"] is None:
        return False
    return not any(
        rule["caller"] in ("*", caller)
        and _methods_overlap(call["methods"], rule["methods"])
        and _overlaps(call["paths"], rule["paths"])
        for rule in target["accepts"]
    )


def build_graph(
    policies: Mapping[str, MeshPolicy], seen: Iterable[str], *, events_app: str = EVENTS_APP
) -> GraphDocument:
    """The graph of ``policies`` (by app name) with the ``seen`` edge strings marked.

    A subscription counts as seen when ``"_events/<topic>>app"`` is in ``seen`` (the event bus
    records a delivery), or when the mesh saw ``events_app`` call the subscriber and it
    subscribes to that one topic alone. Seen traffic that no manifest declares becomes an edge
    with ``declared`` False; unknown apps in it become nodes with ``in_catalog`` False.
    """
    used = set(seen)
    edges: dict[tuple[str, str, EdgeKind], GraphEdge] = {}

    def add(source: str, target: str, kind: EdgeKind, *, declared: bool, refused: bool) -> None:
        key = (source, target, kind)
        if key not in edges:
            edges[key] = {
                "from": source,
                "to": target,
                "kind": kind,
                "declared": declared,
                "refused_by_target": refused,
                "seen": False,
            }

    for name, policy in policies.items():
        for call in policy["consumes"]:
            refused = is_refused(name, call, policies.get(call["service"]))
            add(name, call["service"], "call", declared=True, refused=refused)
        for topic in policy["publishes"]:
            add(name, topic, "publish", declared=True, refused=False)
        for subscription in policy["subscribes"]:
            add(subscription["topic"], name, "subscribe", declared=True, refused=False)

    delivered_to: dict[str, str] = {}  # subscriber -> its only topic
    for name, policy in policies.items():
        subscribed = {s["topic"] for s in policy["subscribes"]}
        if len(subscribed) == 1:
            delivered_to[name] = subscribed.pop()
    for item in sorted(used):
        key: tuple[str, str, EdgeKind]
        source, separator, target = item.partition(">")
        if not separator or not source or not target:
            continue
        if source.startswith(EVENTS_SERVICE + "/"):
            key = (source[len(EVENTS_SERVICE) + 1 :], target, "subscribe")
        elif target.startswith(EVENTS_SERVICE + "/"):
            key = (source, target[len(EVENTS_SERVICE) + 1 :], "publish")
        elif source == events_app and source not in policies:
            if target not in delivered_to:
                continue  # a delivery, but to which of the subscriber's topics is unknown
            key = (delivered_to[target], target, "subscribe")
        else:
            key = (source, target, "call")
        add(*key, declared=False, refused=False)
        edges[key]["seen"] = True

    topics = {e["to"] for e in edges.values() if e["kind"] == "publish"}
    topics |= {e["from"] for e in edges.values() if e["kind"] == "subscribe"}
    apps = {e["from"] for e in edges.values() if e["kind"] != "subscribe"}
    apps |= {e["to"] for e in edges.values() if e["kind"] != "publish"} | set(policies)
    nodes = [GraphNode(name=a, kind="app", in_catalog=a in policies) for a in sorted(apps)]
    declared = {e["to"] for e in edges.values() if e["kind"] == "publish" and e["declared"]}
    declared |= {e["from"] for e in edges.values() if e["kind"] == "subscribe" and e["declared"]}
    nodes += [GraphNode(name=t, kind="topic", in_catalog=t in declared) for t in sorted(topics)]
    order = {"call": 0, "publish": 1, "subscribe": 2}
    return GraphDocument(
        nodes=nodes,
        edges=sorted(edges.values(), key=lambda e: (order[e["kind"]], e["from"], e["to"])),
    )


def graph_from_document(document: object) -> GraphDocument:
    """A graph document received as JSON (the CLI's side), checked; raises ValueError."""
    if not isinstance(document, dict):
        raise ValueError("not a dependency graph document")
    nodes, edges = document.get("nodes"), document.get("edges")
    if not isinstance(nodes, list) or not isinstance(edges, list):
        raise ValueError("not a dependency graph document (nodes, edges)")
    for node in nodes:
        if not isinstance(node, dict) or node.get("kind") not in ("app", "topic"):
            raise ValueError(f"not a graph node: {node!r}")
        if not isinstance(node.get("name"), str):
            raise ValueError(f"not a graph node: {node!r}")
    for edge in edges:
        if not isinstance(edge, dict) or edge.get("kind") not in ("call", "publish", "subscribe"):
            raise ValueError(f"not a graph edge: {edge!r}")
        if not all(isinstance(edge.get(k), str) for k in ("from", "to")):
            raise ValueError(f"not a graph edge: {edge!r}")
    return GraphDocument(
        nodes=[
            GraphNode(name=n["name"], kind=n["kind"], in_catalog=bool(n.get("in_catalog", True)))
            for n in nodes
        ],
        edges=[
            {
                "from": e["from"],
                "to": e["to"],
                "kind": e["kind"],
                "declared": bool(e.get("declared")),
                "refused_by_target": bool(e.get("refused_by_target")),
                "seen": bool(e.get("seen")),
            }
            for e in edges
        ],
    )


# -- rendering ---------------------------------------------------------------------------------


def _ids(graph: GraphDocument) -> dict[tuple[NodeKind, str], str]:
    """Short node ids: app names and topics may share a spelling, and neither is a safe
    identifier in every renderer."""
    ids: dict[tuple[NodeKind, str], str] = {}
    for node in graph["nodes"]:
        prefix = "a" if node["kind"] == "app" else "t"
        ids[(node["kind"], node["name"])] = f"{prefix}{len(ids)}"
    return ids


def _ends(edge: GraphEdge) -> tuple[tuple[NodeKind, str], tuple[NodeKind, str]]:
    source: NodeKind = "topic" if edge["kind"] == "subscribe" else "app"
    target: NodeKind = "topic" if edge["kind"] == "publish" else "app"
    return (source, edge["from"]), (target, edge["to"])


def _label(edge: GraphEdge) -> str:
    """What an edge says beyond its line style."""
    parts: list[str] = [] if edge["kind"] == "call" else [edge["kind"]]
    if not edge["declared"]:
        parts.append("undeclared")
    if edge["refused_by_target"]:
        parts.append("refused by target")
    if not edge["seen"]:
        parts.append("never used")
    return ", ".join(parts)


def _mermaid_text(text: str) -> str:
    # Mermaid reads "#quot;" as a quote inside a quoted label (mermaid.js.org, "Entity codes").
    return text.replace('"', "#quot;")


def render_mermaid(graph: GraphDocument) -> str:
    """A Mermaid flowchart (``flowchart LR``): seen edges solid, never used ones dashed,
    refused and undeclared ones red; topics are rounded."""
    ids = _ids(graph)
    lines = ["flowchart LR"]
    for node in graph["nodes"]:
        node_id, name = ids[(node["kind"], node["name"])], _mermaid_text(node["name"])
        shape = f'(["{name}"])' if node["kind"] == "topic" else f'["{name}"]'
        lines.append(f"  {node_id}{shape}")
    styles = []
    for index, edge in enumerate(graph["edges"]):
        source, target = (ids[end] for end in _ends(edge))
        arrow = "-->" if edge["seen"] else "-.->"
        label = _label(edge)
        text = f'|"{_mermaid_text(label)}"|' if label else ""
        lines.append(f"  {source} {arrow}{text} {target}")
        if edge["refused_by_target"] or not edge["declared"]:
            styles.append(f"  linkStyle {index} stroke:#d00,color:#d00")
    outside = [ids[(n["kind"], n["name"])] for n in graph["nodes"] if not n["in_catalog"]]
    if outside:
        lines.append("  classDef outside stroke-dasharray: 3 3")
        lines.append(f"  class {','.join(outside)} outside")
    return "\n".join(lines + styles) + "\n"


def _dot_text(text: str) -> str:
    """A DOT quoted string (graphviz.org/doc/info/lang.html: only ``"`` needs escaping)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_dot(graph: GraphDocument) -> str:
    """A Graphviz ``digraph``: the same marks as :func:`render_mermaid`."""
    ids = _ids(graph)
    lines = [
        "digraph courtyard {",
        "  rankdir=LR;",
        '  node [shape=box, fontname="sans-serif"];',
        '  edge [fontname="sans-serif", fontsize=10];',
    ]
    for node in graph["nodes"]:
        attributes = [f"label={_dot_text(node['name'])}"]
        if node["kind"] == "topic":
            attributes.append("shape=ellipse")
        if not node["in_catalog"]:
            attributes.append("style=dashed")
        lines.append(f"  {ids[(node['kind'], node['name'])]} [{', '.join(attributes)}];")
    for edge in graph["edges"]:
        source, target = (ids[end] for end in _ends(edge))
        attributes = [] if edge["seen"] else ["style=dashed"]
        if edge["refused_by_target"] or not edge["declared"]:
            attributes.append("color=red, fontcolor=red")
        label = _label(edge)
        if label:
            attributes.append(f"label={_dot_text(label)}")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"  {source} -> {target}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(graph: GraphDocument, format: GraphFormat) -> str:
    """The graph as text in ``format`` (``json``: the API document, indented)."""
    if format == "mermaid":
        return render_mermaid(graph)
    if format == "dot":
        return render_dot(graph)
    return json.dumps(graph, indent=2, sort_keys=True) + "\n"
