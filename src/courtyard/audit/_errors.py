"""Why the audit trail refused something, with the context a caller needs to explain it.

The tree of these errors is drawn once, in the package docstring (``courtyard.audit``).
"""

from __future__ import annotations

from courtyard.core import CourtyardError


class AuditError(CourtyardError):
    """Root of every error the audit trail raises on purpose."""


class AuditEventInvalid(AuditError, ValueError):
    """An event that cannot be recorded; ``field`` names the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class AuditQueryInvalid(AuditError, ValueError):
    """A query filter that cannot be understood; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class EntryNotFound(AuditError):
    """No entry has sequence number ``seq``."""

    def __init__(self, seq: int) -> None:
        super().__init__(f"the audit trail has no entry {seq}")
        self.seq = seq


class EntryArchived(AuditError):
    """Entry ``seq`` was moved to the archive segment ``file`` by retention."""

    def __init__(self, seq: int, file: str) -> None:
        super().__init__(f"audit entry {seq} is archived in {file}")
        self.seq = seq
        self.file = file


class ProofUnavailable(AuditError):
    """An inclusion proof cannot be given (yet) for entry ``seq``."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"no inclusion proof for audit entry {seq}: {reason}")
        self.seq = seq
        self.reason = reason


class AuditClosed(AuditError):
    """The log is closed (or closing) and records nothing more."""

    def __init__(self) -> None:
        super().__init__("the audit log is closed")


class AuditWriteFailed(AuditError):
    """The store failed to commit a batch; none of its entries was acknowledged."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the audit trail could not be written: {reason}")
        self.reason = reason


class AuditKeyError(AuditError):
    """The checkpoint signing key is missing, unreadable, exposed, or not the one in use."""


class TrailDamaged(AuditError):
    """The entries after the latest checkpoint do not chain up; signing them would hide it."""

    def __init__(self, seq: int, detail: str) -> None:
        super().__init__(
            f"the audit trail is damaged at seq {seq}: {detail}; run `courtyard audit verify`"
        )
        self.seq = seq
        self.detail = detail


class TrailRolledBack(AuditError):
    """The external checkpoints file holds a checkpoint the store has not reached."""

    def __init__(self, external_size: int, store_size: int) -> None:
        super().__init__(
            f"the audit checkpoints file signs {external_size} entries but the store holds "
            f"{store_size}: the database was rolled back to an older copy or truncated. "
            "Run `courtyard audit verify`; to accept the loss knowingly, move "
            "audit/checkpoints.jsonl aside"
        )
        self.external_size = external_size
        self.store_size = store_size
