"""Structured logs for every Courtyard process: one JSON object per line on standard error,
with the component, and the request id and trace id of the request being served.

Built on structlog's ProcessorFormatter, so every stdlib ``logging`` call (ours, uvicorn's,
the libraries') comes out in the same shape; request-scoped fields travel in context
variables bound by :func:`request_context`.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

import structlog

_LEVELS = logging.getLevelNamesMapping()


def configure_logging(component: str, *, level: str = "INFO", json: bool = True) -> None:
    """Send every log record to stderr as a JSON line (or a readable line with json=False)."""

    def add_component(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        event.setdefault("component", component)
        return event

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
        add_component,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    wanted = level.upper()
    root.setLevel(wanted if wanted in _LEVELS else "INFO")


@contextlib.contextmanager
def structured_logs(component: str, *, level: str = "INFO") -> Iterator[None]:
    """:func:`configure_logging` for the block; the logging set-up before it comes back after
    (a process that runs a node in-process, like a test, keeps its own)."""
    root = logging.getLogger()
    handlers, before = root.handlers[:], root.level
    configure_logging(component, level=level)
    try:
        yield
    finally:
        root.handlers, root.level = handlers, before


@contextlib.contextmanager
def request_context(request_id: str | None, trace_id: str | None) -> Iterator[None]:
    """Within the block, every log line carries this request's ids."""
    fields = {k: v for k, v in (("request_id", request_id), ("trace_id", trace_id)) if v}
    with structlog.contextvars.bound_contextvars(**fields):
        yield
