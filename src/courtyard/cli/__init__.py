"""The ``courtyard`` command: parses arguments, talks to the node's API, renders for people."""

from courtyard.cli._app import app, main

__all__ = ["app", "main"]
