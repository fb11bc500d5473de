"""The root every package's error tree hangs from."""


class CourtyardError(Exception):
    """Base of every error Courtyard raises on purpose; its ``str`` is meant for people."""
