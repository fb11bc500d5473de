"""The event bus's errors, so the HTTP layer can tell a refused publisher from a bad request.

Error tree::

    CourtyardError
    └── EventError
        ├── PublishRefused      the publisher may not publish to the topic (``reason``)
        ├── EventInvalid        the body is not an event we can store (``status`` 400/413/415)
        └── EventIdTaken        another publisher or topic already used this event id
"""

from __future__ import annotations

from courtyard.core import CourtyardError


class EventError(CourtyardError):
    """Something the event bus refused; ``str`` says what and why."""


class PublishRefused(EventError):
    """``publisher`` may not publish to ``topic`` (contracts.publish_refusal said why)."""

    def __init__(self, publisher: str, topic: str, reason: str) -> None:
        super().__init__(reason)
        self.publisher = publisher
        self.topic = topic
        self.reason = reason


class EventInvalid(EventError):
    """A publish whose body or event id cannot be stored; ``status`` is the HTTP answer."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


class EventIdTaken(EventError):
    """The event id is already stored for another publisher or topic (ids are unique)."""

    def __init__(self, event_id: str) -> None:
        super().__init__(f"event id {event_id!r} is already used by another publisher or topic")
        self.event_id = event_id
