"""Event bus tables (courtyard.mesh): published events and their deliveries per subscriber.
Created by migration 0005."""

from courtyard.store._schema import metadata

__all__ = ["metadata"]
