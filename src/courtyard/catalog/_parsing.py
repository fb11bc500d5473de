"""Read ``courtyard.yaml`` text into a :class:`Manifest`, or explain every mistake in it.

YAML is loaded with the safe loader, refusing duplicate keys (PyYAML keeps the last one
silently), documents over 1 MiB and alias bombs, before the models check the content.
"""

from __future__ import annotations

from typing import Any, NoReturn

import yaml
from pydantic import ValidationError

from courtyard.catalog._errors import ManifestInvalid, ManifestProblem
from courtyard.catalog._manifest import Manifest
from courtyard.catalog._problems import DOCUMENT, problems_from
from courtyard.catalog._types import show

MAX_MANIFEST_BYTES = 2**20
# Nodes visited with aliases expanded; a real manifest has a few hundred.
_MAX_NODES = 100_000
_MERGE_TAG = "tag:yaml.org,2002:merge"


def parse_manifest(data: str | bytes, source: str = "courtyard.yaml") -> Manifest:
    """Parse and validate a manifest; ``source`` names the file in problems.

    Raises :class:`ManifestInvalid` listing one :class:`ManifestProblem` per mistake.
    """
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_MANIFEST_BYTES:
        _reject(source, f"the manifest is {len(raw)} bytes; the limit is 1 MiB")
    try:
        text = raw.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        _reject(source, f"not UTF-8 text (byte {exc.start} is invalid)")
    document = load_yaml(text, source)
    if not isinstance(document, dict):
        got = "an empty document" if document is None else show(document)
        _reject(source, f"expected a mapping (apiVersion, kind, metadata, spec), got {got}")
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        raise ManifestInvalid(problems_from(exc, source)) from None


def manifest_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of ``courtyard.yaml``, with the YAML field names."""
    schema = Manifest.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://courtyard.dev/schemas/courtyard.dev/v1alpha1/manifest.json",
        **schema,
        "title": "Courtyard app manifest (courtyard.yaml)",
    }


def load_yaml(text: str, source: str) -> Any:
    """Load one YAML document safely; any YAML mistake becomes a one-problem ManifestInvalid."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_keys(node, source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = ", ".join(part for part in (exc.context, exc.problem) if part) or "unreadable"
        _reject(source, f"invalid YAML at {where}{reason}")
    except yaml.YAMLError as exc:
        _reject(source, f"invalid YAML: {exc}")
    except RecursionError:
        _reject(source, "invalid YAML: nested too deeply")
    finally:
        loader.dispose()


def _check_keys(root: yaml.Node, source: str) -> None:
    """Refuse duplicate mapping keys, naming the field; bound the work aliases can cause."""
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    duplicates: list[tuple[int, ManifestProblem]] = []
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited > _MAX_NODES:
            _reject(source, f"too many values (over {_MAX_NODES} once aliases are expanded)")
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value))
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                if key.tag == _MERGE_TAG:
                    stack.append((value, path))
                    continue
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else "(complex key)"
                field = f"{path}.{name}" if path else name
                if name in first_line:
                    message = (
                        f"duplicate key (line {key.start_mark.line + 1}; "
                        f"first on line {first_line[name]})"
                    )
                    line = key.start_mark.line
                    duplicates.append((line, ManifestProblem(source, field, message)))
                    continue
                first_line[name] = key.start_mark.line + 1
                stack.append((value, field))
    if duplicates:
        raise ManifestInvalid(problem for _, problem in sorted(duplicates, key=lambda d: d[0]))


def _reject(source: str, message: str, field: str = DOCUMENT) -> NoReturn:
    raise ManifestInvalid([ManifestProblem(source, field, message)])
