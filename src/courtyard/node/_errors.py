"""Errors of the node (the tree is drawn in the package docstring)."""

from courtyard.core import CourtyardError


class NodeError(CourtyardError):
    """Root of the node's errors."""


class ConfigInvalid(NodeError):
    """A setting has a value the node cannot use; the message names the setting."""


class NodeStartFailed(NodeError):
    """The node could not start (port taken, data directory locked, a worker died)."""
