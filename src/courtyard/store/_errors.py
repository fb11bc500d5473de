"""The store's error tree, so callers can tell a bad database URL from a broken database.

Error tree::

    CourtyardError
    └── StoreError
"""

from courtyard.core import CourtyardError


class StoreError(CourtyardError):
    """The database could not be opened, migrated or checked; ``str`` says which and why."""
