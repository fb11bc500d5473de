"""``${NAME}`` placeholders in ``run.command`` and ``run.env``: one grammar to check and expand.

``$$`` is a literal ``$``; ``${NAME}`` is a platform variable (``PORT``...) or a key of
``run.env``; any other ``$`` is a mistake, caught when the manifest is read, not at start time.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# What the runtime sets for every instance; a manifest may reference these without declaring.
PLATFORM_VARIABLES = frozenset(
    {
        "COURTYARD_APP",
        "COURTYARD_INSTANCE",
        "COURTYARD_MESH_URL",
        "COURTYARD_NODE_ID",
        "COURTYARD_PLATFORM_URL",
        "COURTYARD_REVISION",
        "COURTYARD_WORKLOAD_CREDENTIAL",
        "HOST",
        "PORT",
    }
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class PlaceholderError(ValueError):
    """A malformed ``$`` use; the message says which and how to write it."""


def _tokens(text: str) -> list[str | tuple[str]]:
    """Split ``text`` into literal strings and ``(name,)`` references."""
    parts: list[str | tuple[str]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char != "$":
            literal.append(char)
            i += 1
            continue
        following = text[i + 1 : i + 2]
        if following == "$":
            literal.append("$")
            i += 2
            continue
        if following != "{":
            raise PlaceholderError(
                f'a lone "$" at position {i}: write "${{NAME}}" for a variable or "$$" for a "$"'
            )
        end = text.find("}", i + 2)
        if end < 0:
            raise PlaceholderError(f'unterminated "${{" at position {i}: expected "}}"')
        name = text[i + 2 : end]
        if not name:
            raise PlaceholderError(f'empty "${{}}" at position {i}: expected a variable name')
        if _NAME.fullmatch(name) is None:
            raise PlaceholderError(
                f'invalid variable name "{name}" in "${{{name}}}": use letters, digits and "_", '
                "not starting with a digit"
            )
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append((name,))
        i = end + 1
    if literal:
        parts.append("".join(literal))
    return parts


def check_placeholders(text: str) -> str:
    """Return ``text`` if every ``$`` in it is well formed, else raise PlaceholderError."""
    _tokens(text)
    return text


def placeholder_names(text: str) -> list[str]:
    """The variable names ``text`` references, in order (duplicates kept)."""
    return [part[0] for part in _tokens(text) if isinstance(part, tuple)]


def expand_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Replace each ``${NAME}`` by ``values[NAME]`` and ``$$`` by ``$``.

    Raises ``KeyError`` for a name missing from ``values`` (a manifest that passed validation
    references only platform variables and its own ``run.env`` keys).
    """
    return "".join(part if isinstance(part, str) else values[part[0]] for part in _tokens(text))


def expand_environment(env: Mapping[str, str], platform: Mapping[str, str]) -> dict[str, str]:
    """Expand every ``run.env`` value, resolving references to other keys first.

    ``platform`` holds the platform variables (``PORT``, ``COURTYARD_APP``...), which no
    ``run.env`` key may shadow; validation has already refused cycles.
    """
    done: dict[str, str] = {}

    def resolve(key: str) -> str:
        if key not in done:
            references = {
                name: resolve(name) if name in env else platform[name]
                for name in placeholder_names(env[key])
            }
            done[key] = expand_placeholders(env[key], references)
        return done[key]

    for key in env:
        resolve(key)
    return done


def find_cycle(env: Mapping[str, str]) -> list[str] | None:
    """A chain ``[A, B, A]`` of ``run.env`` keys that reference each other in a loop, if any."""
    graph = {
        key: [name for name in placeholder_names(value) if name in env]
        for key, value in env.items()
    }
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(key: str) -> list[str] | None:
        state[key] = 1
        path.append(key)
        for name in graph[key]:
            if state.get(name) == 1:
                return [*path[path.index(name) :], name]
            if name not in state and (cycle := visit(name)) is not None:
                return cycle
        path.pop()
        state[key] = 2
        return None

    for key in graph:
        if key not in state and (cycle := visit(key)) is not None:
            return cycle
    return None
