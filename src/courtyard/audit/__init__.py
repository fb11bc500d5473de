"""The tamper-evident audit trail: who did what to which target, with what outcome, and why.

Every writer calls :meth:`AuditLog.record`; entries are hash-chained, committed in groups,
covered by signed RFC 6962 Merkle checkpoints, and verifiable offline from an export with
the public key alone. HTTP routes live in ``audit.api``.

Error tree::

    CourtyardError
    └── AuditError
        ├── AuditEventInvalid    an event broke a rule (action pattern, sizes, detail types)
        ├── AuditQueryInvalid    a query filter cannot be understood (e.g. a bad timestamp)
        ├── EntryNotFound        no entry has that sequence number
        ├── EntryArchived        the entry was moved to an archive segment (.file)
        ├── ProofUnavailable     no signed checkpoint covers the entry yet
        ├── AuditClosed          record() after aclose()
        ├── AuditWriteFailed     the store refused a batch; none of its entries was acknowledged
        ├── AuditKeyError        the signing key is missing, unreadable, exposed or not the log's
        ├── TrailDamaged         the unsigned tail does not chain up: the log will not sign it
        └── TrailRolledBack      the checkpoints file is ahead of the store (an older copy?)
"""

from courtyard.audit._canonical import canonical_json
from courtyard.audit._checkpoints import Checkpoint
from courtyard.audit._config import AuditConfig
from courtyard.audit._errors import (
    AuditClosed,
    AuditError,
    AuditEventInvalid,
    AuditKeyError,
    AuditQueryInvalid,
    AuditWriteFailed,
    EntryArchived,
    EntryNotFound,
    ProofUnavailable,
    TrailDamaged,
    TrailRolledBack,
)
from courtyard.audit._events import (
    MAX_DETAILS_BYTES,
    REDACTED,
    Actor,
    ActorKind,
    AuditEntry,
    AuditEvent,
    AuditReceipt,
    EntryRow,
    Outcome,
)
from courtyard.audit._export import EXPORT_FORMAT
from courtyard.audit._keys import load_public_key
from courtyard.audit._log import AuditLog
from courtyard.audit._merkle import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from courtyard.audit._proofs import InclusionProof
from courtyard.audit._sql import SqlAuditStore, SqlDatabase
from courtyard.audit._store import (
    AppendBatch,
    ArchiveSegment,
    AuditQuery,
    AuditStore,
    MemoryAuditStore,
    StoreHead,
)
from courtyard.audit._verify import VerifyReport, verify, verify_export

__all__ = [
    "EXPORT_FORMAT",
    "MAX_DETAILS_BYTES",
    "REDACTED",
    "Actor",
    "ActorKind",
    "AppendBatch",
    "ArchiveSegment",
    "AuditClosed",
    "AuditConfig",
    "AuditEntry",
    "AuditError",
    "AuditEvent",
    "AuditEventInvalid",
    "AuditKeyError",
    "AuditLog",
    "AuditQuery",
    "AuditQueryInvalid",
    "AuditReceipt",
    "AuditStore",
    "AuditWriteFailed",
    "Checkpoint",
    "CompactRange",
    "EntryArchived",
    "EntryNotFound",
    "EntryRow",
    "InclusionProof",
    "MemoryAuditStore",
    "Outcome",
    "ProofUnavailable",
    "SqlAuditStore",
    "SqlDatabase",
    "StoreHead",
    "TrailDamaged",
    "TrailRolledBack",
    "VerifyReport",
    "canonical_json",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "load_public_key",
    "merkle_root",
    "node_hash",
    "verify",
    "verify_consistency",
    "verify_export",
    "verify_inclusion",
]
