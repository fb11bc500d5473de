"""Field types of the manifest, each with one error message a person can act on.

Every check raises a ``PydanticCustomError`` of type ``"courtyard"`` whose text is final, so the
problem list never shows pydantic's own wording. Quantities follow Kubernetes' syntax.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Hashable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from courtyard.catalog._placeholders import PLATFORM_VARIABLES, PlaceholderError, check_placeholders
from courtyard.core import is_dns_label

ERROR_TYPE = "courtyard"

Kind = Literal["Application", "Resource", "Interface"]
Stage = Literal["prototype", "sandbox", "validated", "production", "maintenance", "decommissioned"]


def show(value: Any) -> str:
    """A short rendering of a rejected value for "got ..." (JSON for scalars)."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None:
        return "nothing (null)"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + '..."'


def fail(message: str) -> NoReturn:
    """Reject the value being validated with ``message`` as the whole problem text."""
    raise PydanticCustomError(ERROR_TYPE, message)


def fail_at(problems: Sequence[tuple[tuple[str | int, ...], str, Any]]) -> NoReturn:
    """Reject with several problems located below the value being validated."""
    raise ValidationError.from_exception_data(
        "manifest",
        [
            InitErrorDetails(type=PydanticCustomError(ERROR_TYPE, message), loc=loc, input=value)
            for loc, message, value in problems
        ],
    )


_H = TypeVar("_H", bound=Hashable)


def unique(items: list[_H]) -> list[_H]:
    """After-validator for lists whose items must differ; names the duplicate's index."""
    first: dict[_H, int] = {}
    duplicates = []
    for index, item in enumerate(items):
        if item in first:
            duplicates.append(((index,), f"duplicate of item [{first[item]}]", item))
        first.setdefault(item, index)
    if duplicates:
        fail_at(duplicates)
    return items


def _checked(check: Callable[[str], str | None]) -> Callable[[str], str]:
    """An after-validator from ``check``, which returns an error message or None."""

    def validate(value: str) -> str:
        message = check(value)
        if message is not None:
            fail(message)
        return value

    return validate


def _schema(description: str, **extra: Any) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "description": description, **extra})


def _label_error(value: str) -> str | None:
    if is_dns_label(value):
        return None
    return (
        f"expected a lower-case RFC 1123 name (a-z, 0-9 and '-', at most 63 characters, "
        f"starting and ending with a letter or digit), got {show(value)}"
    )


_EMAIL = re.compile(r"[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")
_CAPABILITY = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ACCESS = re.compile(r"(user|group|role):(\S{1,254})")
# RFC 3986 §3.3 pchar without "%" (percent-encoding would allow two spellings of one route).
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*")
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "*")


def _email_error(value: str) -> str | None:
    if len(value) <= 254 and _EMAIL.fullmatch(value):
        return None
    return f"expected an email address like dana@example.com, got {show(value)}"


def _capability_error(value: str) -> str | None:
    if _CAPABILITY.fullmatch(value):
        return None
    return (
        "expected a capability name (lower case, digits, '-' and '.', starting and ending "
        f"with a letter or digit), got {show(value)}"
    )


def _host_error(value: str) -> str | None:
    labels = value.split(".")
    if len(value) <= 253 and all(is_dns_label(label) for label in labels):
        return None
    return f"expected a lower-case DNS host name like expenses.example.com, got {show(value)}"


def _route_path_error(value: str) -> str | None:
    if not (value.startswith("/") and value.endswith("/")):
        return f"a route path must start and end with '/', got {show(value)}"
    if ".." in value:
        return f"a route path must not contain '..', got {show(value)}"
    if "//" in value:
        return f"a route path must not contain '//', got {show(value)}"
    if "%" in value:
        return f"a route path must not contain '%' (write characters unencoded), got {show(value)}"
    if len(value) > 1024 or _PATH_CHARS.fullmatch(value) is None:
        return (
            "a route path may contain only letters, digits and -._~!$&'()*+,;=:@/ "
            f"(at most 1024 characters), got {show(value)}"
        )
    return None


def _http_path_error(value: str) -> str | None:
    if value.startswith("/") and len(value) <= 1024 and value.isprintable() and " " not in value:
        return None
    return f"expected a path starting with '/' (no spaces), got {show(value)}"


def _path_pattern_error(value: str) -> str | None:
    if (error := _http_path_error(value)) is not None:
        return error
    if ".." in value:
        return f"a path pattern must not contain '..', got {show(value)}"
    return None


def _env_name_error(value: str) -> str | None:
    if _ENV_NAME.fullmatch(value) is None:
        return (
            "invalid environment variable name (letters, digits and '_', "
            f"not starting with a digit): {show(value)}"
        )
    if value in PLATFORM_VARIABLES or value.startswith("COURTYARD_"):
        return f"{value} is set by the platform; choose another name"
    return None


def _access_error(value: str) -> str | None:
    if _ACCESS.fullmatch(value):
        return None
    return f"expected 'user:<email or name>', 'group:<group>' or 'role:<role>', got {show(value)}"


def _method_error(value: str) -> str | None:
    if value in _METHODS:
        return None
    return f"expected an HTTP method in upper case ({', '.join(_METHODS)}), got {show(value)}"


def _placeholder_error(value: str) -> str | None:
    try:
        check_placeholders(value)
    except PlaceholderError as exc:
        return str(exc)
    return None


def _bounded_int(low: int, high: int) -> Callable[[Any], int]:
    def validate(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            fail(f"expected an integer from {low} to {high}, got {show(value)}")
        return value

    return validate


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DAY = 86400.0


def _duration(minimum: float) -> Callable[[Any], float]:
    """Parse "500ms", "2s", "1m", "1h" or a number of seconds; allow ``minimum``..24h."""

    def validate(value: Any) -> float:
        seconds: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        elif isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
            seconds = float(match[1]) * _DURATION_UNITS[match[2]]
        lowest = "0" if minimum == 0 else "more than 0"
        if seconds is None or not math.isfinite(seconds):
            fail(f'expected a duration like "500ms", "2s" or "1m" (or seconds), got {show(value)}')
        if seconds < minimum or (minimum > 0 and seconds == 0) or seconds > _DAY:
            fail(f"expected a duration from {lowest} to 24h, got {show(value)}")
        return seconds

    return validate


_WINDOW = re.compile(r"(\d+)(h|d|w)")
_WINDOW_UNITS = {"h": 3600.0, "d": _DAY, "w": 7 * _DAY}


def _slo_window(value: Any) -> float:
    """Parse an SLO window: "28d", "30d", "4w" or "168h"; from 1d to 90d."""
    if not isinstance(value, str) or not (match := _WINDOW.fullmatch(value.strip())):
        fail(f'expected a window like "28d", "30d" or "4w", got {show(value)}')
    seconds = int(match[1]) * _WINDOW_UNITS[match[2]]
    if not _DAY <= seconds <= 90 * _DAY:
        fail(f"expected a window from 1d to 90d, got {show(value)}")
    return seconds


def _objective(value: Any) -> float:
    """A percentage such as 99.9, strictly between 0 and 100, as a fraction (0.999)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        fail(f"expected a percentage like 99.9, got {show(value)}")
    if not 0 < value < 100:
        fail(f"expected a percentage above 0 and below 100, got {show(value)}")
    return float(Decimal(str(value)) / 100)


_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|K|M|G|T)?")
_QUANTITY_UNITS = {
    None: 1,
    "k": 10**3,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def _byte_quantity(value: Any) -> int:
    """Parse a Kubernetes memory quantity ("256Mi", "1G", "1.5Gi") or a number of bytes."""
    amount: Decimal | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        amount = Decimal(value)
    elif isinstance(value, str) and (match := _QUANTITY.fullmatch(value.strip())):
        amount = Decimal(match[1]) * _QUANTITY_UNITS[match[2]]
    if amount is None:
        fail(
            'expected a size like "256Mi", "1Gi", "500M" or a number of bytes '
            f"(suffixes Ki, Mi, Gi, Ti, k, M, G, T), got {show(value)}"
        )
    if not 0 < amount <= 2**50:
        fail(f"expected a size above 0 and at most 1Pi, got {show(value)}")
    return math.ceil(amount)


def _cpu_quantity(value: Any) -> int:
    """Parse a Kubernetes CPU quantity ("500m", "0.5", 1) into millicores."""
    cores: Decimal | None = None
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            cores = Decimal(str(value))
        elif isinstance(value, str) and re.fullmatch(r"\d+m", value.strip()):
            cores = Decimal(value.strip()[:-1]) / 1000
        elif isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value.strip()):
            cores = Decimal(value.strip())
    except InvalidOperation:
        cores = None
    if cores is None:
        fail(f'expected CPU like "500m", "0.5" or "2", got {show(value)}')
    if not Decimal("0.001") <= cores <= 1024:
        fail(f"expected CPU from 1m to 1024 cores, got {show(value)}")
    return math.ceil(cores * 1000)


Label = Annotated[
    str, AfterValidator(_checked(_label_error)), _schema("RFC 1123 label", maxLength=63)
]
Email = Annotated[str, AfterValidator(_checked(_email_error)), _schema("email address")]
Capability = Annotated[str, AfterValidator(_checked(_capability_error)), _schema("capability")]
# Event topics follow the capability grammar ("expenses.submitted").
Topic = Annotated[str, AfterValidator(_checked(_capability_error)), _schema("event topic")]
Host = Annotated[str, AfterValidator(_checked(_host_error)), _schema("lower-case DNS name")]
RoutePath = Annotated[
    str,
    AfterValidator(_checked(_route_path_error)),
    _schema("path prefix starting and ending with '/'"),
]
HttpPath = Annotated[str, AfterValidator(_checked(_http_path_error)), _schema("path")]
PathPattern = Annotated[
    str, AfterValidator(_checked(_path_pattern_error)), _schema("path, '*' and '**' globs")
]
EnvName = Annotated[str, AfterValidator(_checked(_env_name_error)), _schema("variable name")]
AccessEntry = Annotated[
    str,
    AfterValidator(_checked(_access_error)),
    _schema("user:<id>, group:<group> or role:<role>"),
]
Method = Annotated[str, AfterValidator(_checked(_method_error)), _schema("HTTP method or '*'")]
PlaceholderText = Annotated[
    str,
    AfterValidator(_checked(_placeholder_error)),
    _schema("text with ${NAME} placeholders; $$ for a literal $"),
]

Replicas = Annotated[
    int,
    BeforeValidator(_bounded_int(1, 64)),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 64}),
]
Threshold = Annotated[
    int,
    BeforeValidator(_bounded_int(1, 100)),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 100}),
]
_DURATION_SCHEMA = WithJsonSchema(
    {
        "anyOf": [
            {"type": "number", "minimum": 0},
            {"type": "string", "pattern": r"^\d+(\.\d+)?(ms|s|m|h)$"},
        ],
        "description": "seconds, or a duration like 500ms, 2s, 1m",
    }
)
Duration = Annotated[float, BeforeValidator(_duration(0.001)), _DURATION_SCHEMA]
NonNegativeDuration = Annotated[float, BeforeValidator(_duration(0.0)), _DURATION_SCHEMA]
SloWindow = Annotated[
    float,
    BeforeValidator(_slo_window),
    PlainSerializer(
        lambda seconds: (
            f"{round(seconds / _DAY)}d" if seconds % _DAY == 0 else f"{round(seconds / 3600)}h"
        )
    ),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]+(h|d|w)$", "examples": ["28d"]}),
]
Objective = Annotated[
    float,
    BeforeValidator(_objective),
    PlainSerializer(lambda fraction: float(Decimal(str(fraction)) * 100)),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100}),
]
ByteSize = Annotated[
    int,
    BeforeValidator(_byte_quantity),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|k|K|M|G|T)?$"},
            ],
            "description": "bytes, or a quantity like 256Mi, 1Gi, 500M",
        }
    ),
]
# Millicores; written back as "<n>m" so a canonical document re-reads as the same value.
Cpu = Annotated[
    int,
    BeforeValidator(_cpu_quantity),
    PlainSerializer(lambda millicores: f"{millicores}m", return_type=str),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": r"^(\d+m|\d+(\.\d+)?)$"},
            ],
            "description": "cores, or millicores like 500m",
        }
    ),
]
