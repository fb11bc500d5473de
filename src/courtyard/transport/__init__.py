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

__all__ = ["ChannelClosed", "ControlClient", "ControlServer", "TransportError"]
