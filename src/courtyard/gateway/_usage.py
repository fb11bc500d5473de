"""What a worker tells the control plane about callers: the sessions it saw (their idle
timeout restarts), the requests it refused (the audit trail) and the mesh edges it forwarded
(the dependency graph), gathered in memory and sent as one ``usage`` message a second at most."""

from __future__ import annotations

from courtyard.contracts import AccessDenial, UsageMessage

MAX_DENIALS = 1000  # denials kept per report; more are counted, not sent


class UsageLog:
    """Used session keys, denials and mesh edges since the last :meth:`take`."""

    __slots__ = ("denials", "dropped", "edges", "used")

    def __init__(self) -> None:
        self.used: set[str] = set()
        self.denials: list[AccessDenial] = []
        self.edges: set[str] = set()  # "caller>target", "caller>_events/<topic>"
        self.dropped = 0  # denials over MAX_DENIALS since the last report

    def deny(self, denial: AccessDenial) -> None:
        """Record a refused request (bounded: a flood is counted, not kept)."""
        if len(self.denials) < MAX_DENIALS:
            self.denials.append(denial)
        else:
            self.dropped += 1

    def take(self, worker: int) -> tuple[UsageMessage | None, int]:
        """The report to send (None when there is nothing) and how many denials it dropped."""
        dropped, self.dropped = self.dropped, 0
        if not self.used and not self.denials and not self.edges:
            return None, dropped
        message = UsageMessage(
            type="usage", worker=worker, used=sorted(self.used), denials=self.denials
        )
        if self.edges:
            message["edges"] = sorted(self.edges)
        self.used = set()
        self.denials = []
        self.edges = set()
        return message, dropped
