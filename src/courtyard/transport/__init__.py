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

__all__ = [
    "ChannelClosed",
    "ControlClient",
    "ControlServer",
    "TransportError",
    "configure_logging",
    "request_context",
    "structured_logs",
]
