"""Identity tables (courtyard.iam): users, groups, role bindings, service accounts, sessions
and API tokens. Created by migration 0003."""

from courtyard.store._schema import metadata

__all__ = ["metadata"]
