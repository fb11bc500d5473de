"""Turn pydantic's validation errors into manifest problems: one per mistake, in YAML terms.

Field paths use the YAML names and ``[i]`` indices (``spec.routes[0].path``); messages are
ours, so a reader never sees pydantic's wording, URLs or a traceback.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from courtyard.catalog._errors import ManifestProblem
from courtyard.catalog._types import ERROR_TYPE, show

DOCUMENT = "(document)"


def field_path(loc: tuple[str | int, ...]) -> str:
    """``("spec", "routes", 0, "path")`` -> ``"spec.routes[0].path"``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part == "[key]":  # pydantic's marker for an error in a mapping key
            continue
        else:
            path += f".{part}" if path else str(part)
    return path or DOCUMENT


def problems_from(error: ValidationError, source: str) -> list[ManifestProblem]:
    """One problem per pydantic error, in document order."""
    return [
        ManifestProblem(source, field_path(detail["loc"]), message_for(detail))
        for detail in error.errors(include_url=False)
    ]


_SIMPLE = {
    "missing": "required",
    "extra_forbidden": "unknown field",
}
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
}


def message_for(detail: ErrorDetails) -> str:
    """The sentence for one pydantic error."""
    kind = detail["type"]
    ctx: dict[str, Any] = dict(detail.get("ctx") or {})
    got = show(detail.get("input"))
    if kind == ERROR_TYPE:
        return detail["msg"]
    if kind in _SIMPLE:
        return _SIMPLE[kind]
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {got}"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        if len(choices) == 1:
            return f'expected "{choices[0]}", got {got}'
        return f"expected one of {', '.join(choices)}; got {got}"
    if kind == "too_short":
        count = ctx.get("min_length", 1)
        return f"expected at least {count} item{'s' if count != 1 else ''}"
    if kind == "too_long":
        return f"expected at most {ctx.get('max_length')} items"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"expected at most {ctx.get('max_length')} characters, got {got}"
    # A pydantic check we did not word ourselves: keep its sentence, drop its decoration.
    message = str(detail["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]
