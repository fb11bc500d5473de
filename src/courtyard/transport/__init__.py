"""Plumbing that carries messages between Courtyard's own processes.

Error tree::

    TransportError
    └── ChannelClosed
"""

from courtyard.transport._channel import (
    ChannelClosed,
    ControlClient,
    ControlServer,
    TransportError,
)
from courtyard.transport._logging import configure_logging, request_context, structured_logs
from courtyard.transport._spans import SPAN_ROWS, expand_span_rows

__all__ = [
    "SPAN_ROWS",
    "ChannelClosed",
    "ControlClient",
    "ControlServer",
    "TransportError",
    "configure_logging",
    "expand_span_rows",
    "request_context",
    "structured_logs",
]
