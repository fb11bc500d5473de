"""``${NAME}`` placeholders in commands and env values, so a manifest can say ``--port ${PORT}``.

The syntax is the strict subset of POSIX shell parameter expansion that needs no shell:
``${NAME}`` with NAME matching ``[A-Za-z_][A-Za-z0-9_]*`` and ``$$`` for a literal ``$``.
Anything else after a ``$`` is an error rather than a silent literal, so typos surface at deploy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from courtyard.runtime._errors import PlaceholderError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def expand_placeholders(template: str, variables: Mapping[str, str]) -> str:
    """Replace every ``${NAME}`` by ``variables[NAME]`` and ``$$`` by ``$``.

    Raises PlaceholderError naming the placeholder when a name is unknown or a ``$`` is
    followed by anything else.
    """

    def lookup(name: str) -> str:
        try:
            return variables[name]
        except KeyError:
            raise PlaceholderError(name, template) from None

    return _expand(template, lookup)


def expand_environment(env: Mapping[str, str], variables: Mapping[str, str]) -> dict[str, str]:
    """Expand every value of ``env``; values may name ``variables`` and other keys of ``env``.

    Keys of ``env`` refer to their own expanded values, resolved in dependency order; a
    cycle (``A=${B}``, ``B=${A}``) is a PlaceholderError.
    """
    done: dict[str, str] = {}

    def resolve(key: str, chain: tuple[str, ...]) -> str:
        if key in done:
            return done[key]
        if key in chain:
            cycle = " -> ".join((*chain[chain.index(key) :], key))
            raise PlaceholderError(key, env[key], f"placeholder cycle in env: {cycle}")

        def lookup(name: str) -> str:
            if name in env:
                return resolve(name, (*chain, key))
            if name in variables:
                return variables[name]
            raise PlaceholderError(name, env[key], f"unknown placeholder ${{{name}}} in {key}")

        done[key] = _expand(env[key], lookup)
        return done[key]

    for key in env:
        resolve(key, ())
    return done


def _expand(template: str, lookup: Callable[[str], str]) -> str:
    out: list[str] = []
    i = 0
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        rest = template[j + 1 :]
        if rest.startswith("$"):
            out.append("$")
            i = j + 2
            continue
        if rest.startswith("{"):
            end = rest.find("}")
            name = rest[1:end] if end >= 0 else rest[1:]
            if end >= 0 and _NAME.fullmatch(name):
                out.append(lookup(name))
                i = j + 2 + end
                continue
            raise PlaceholderError(
                name,
                template,
                f"bad placeholder ${{{name}{'}' if end >= 0 else ''} in {template!r}",
            )
        shown = rest[:1] or "end of text"
        raise PlaceholderError(
            shown,
            template,
            f"stray '$' before {shown!r} in {template!r} (write ${{NAME}}, or $$ for a '$')",
        )
