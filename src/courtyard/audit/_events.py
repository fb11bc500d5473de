"""What callers hand the audit trail (events) and what it hands back (entries, receipts).

Events are checked and scrubbed when they are built, so a secret or a malformed action never
reaches the queue, the database or an export.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple, get_args

from courtyard.audit._canonical import ENTRY_VERSION, MAX_SAFE_INTEGER, canonical_json
from courtyard.audit._errors import AuditEventInvalid

ActorKind = Literal["user", "service", "system"]
Outcome = Literal["success", "failure", "denied"]

ACTOR_KINDS: Final = frozenset(get_args(ActorKind))
OUTCOMES: Final = frozenset(get_args(Outcome))

# Dotted verbs, at least two parts: app.deploy, auth.login.failure, access.deny.
ACTION_PATTERN: Final = re.compile(r"[a-z][a-z0-9_-]*(?:\.[a-z][a-z0-9_-]*)+")
# Detail keys whose values never enter the trail, at any depth.
SECRET_KEY_PATTERN: Final = re.compile(
    r"password|secret|token|authorization|cookie|credential|private|api[_-]?key", re.IGNORECASE
)
REDACTED: Final = "[redacted]"
MAX_DETAILS_BYTES: Final = 4096
_MAX_DEPTH = 16
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

# Longest value of each text field; the database columns are as wide.
LIMITS: Final = {
    "actor.id": 255,
    "actor.auth": 64,
    "action": 128,
    "target": 1024,
    "reason": 1024,
    "request_id": 128,
    "trace_id": 128,
}


def _text(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise AuditEventInvalid(name, f"expected a string, got {type(value).__name__}")
    if not value and not optional:
        raise AuditEventInvalid(name, "must not be empty")
    if len(value) > LIMITS[name]:
        raise AuditEventInvalid(name, f"longer than {LIMITS[name]} characters")
    # One line each: no terminal escapes or forged line breaks in what people read later.
    if _CONTROL.search(value):
        raise AuditEventInvalid(name, "must not contain control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise AuditEventInvalid(name, "is not valid Unicode (lone surrogate)") from None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: a person, a service (workload identity) or the platform itself.

    ``auth`` says how they authenticated ("password", "token", "mtls", ...), if at all.
    """

    kind: ActorKind
    id: str
    auth: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ACTOR_KINDS:
            raise AuditEventInvalid(
                "actor.kind", f"expected one of user, service, system; got {self.kind!r}"
            )
        _text("actor.id", self.id)
        _text("actor.auth", self.auth, optional=True)


def _scrub(value: object, path: str, depth: int) -> Any:
    """A copy of ``value`` with secret-named members redacted; refuses what JCS cannot keep."""
    if depth > _MAX_DEPTH:
        raise AuditEventInvalid(path, f"nested deeper than {_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise AuditEventInvalid(path, "integer outside ±(2^53 - 1); use a string")
        return value
    if isinstance(value, float):
        raise AuditEventInvalid(path, "numbers with a fraction are not recorded; use a string")
    if isinstance(value, Mapping):
        scrubbed: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditEventInvalid(path, f"keys must be strings, got {type(key).__name__}")
            member = f"{path}.{key}"
            scrubbed[key] = (
                REDACTED if SECRET_KEY_PATTERN.search(key) else _scrub(item, member, depth + 1)
            )
        return scrubbed
    if isinstance(value, list | tuple):
        return [_scrub(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise AuditEventInvalid(path, f"{type(value).__name__} has no JSON form")


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One thing that happened, as its writer reports it; the log adds seq, time and hashes.

    ``details`` is a small JSON object (≤ 4 KiB canonical). Members named like secrets
    (password, token, cookie, api_key, ...) are replaced by ``"[redacted]"`` at any depth.
    """

    actor: Actor
    action: str
    target: str
    outcome: Outcome
    reason: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    details_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.actor, Actor):
            raise AuditEventInvalid("actor", "expected an Actor")
        _text("action", self.action)
        if not ACTION_PATTERN.fullmatch(self.action):
            raise AuditEventInvalid(
                "action", f"{self.action!r} is not a dotted verb like app.deploy or access.deny"
            )
        _text("target", self.target)
        if self.outcome not in OUTCOMES:
            raise AuditEventInvalid(
                "outcome", f"expected one of success, failure, denied; got {self.outcome!r}"
            )
        _text("reason", self.reason, optional=True)
        _text("request_id", self.request_id, optional=True)
        _text("trace_id", self.trace_id, optional=True)
        if not isinstance(self.details, Mapping):
            raise AuditEventInvalid("details", "expected a JSON object")
        details = _scrub(self.details, "details", 0)
        try:
            encoded = canonical_json(details)
        except ValueError as exc:
            raise AuditEventInvalid("details", str(exc)) from None
        if len(encoded) > MAX_DETAILS_BYTES:
            raise AuditEventInvalid(
                "details", f"{len(encoded)} bytes is more than the {MAX_DETAILS_BYTES} allowed"
            )
        object.__setattr__(self, "details", details)
        object.__setattr__(self, "details_json", encoded.decode("utf-8"))


@dataclass(frozen=True, slots=True)
class AuditReceipt:
    """What ``record`` returns once the entry is durable: its place and its chain hash."""

    seq: int
    entry_hash: str


class EntryRow(NamedTuple):
    """One stored entry, column for column; ``details`` is canonical JSON text, hashes hex."""

    seq: int
    time_us: int
    actor_kind: str
    actor_id: str
    actor_auth: str | None
    action: str
    target: str
    outcome: str
    reason: str | None
    request_id: str | None
    trace_id: str | None
    details: str
    prev_hash: str
    entry_hash: str
    leaf_hash: str


def rfc3339(time_us: int) -> str:
    """Microseconds since the epoch as an RFC 3339 UTC timestamp."""
    moment = datetime.fromtimestamp(time_us / 1_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An entry of the trail as readers see it."""

    seq: int
    time_us: int
    actor: Actor
    action: str
    target: str
    outcome: str
    reason: str | None
    request_id: str | None
    trace_id: str | None
    details: dict[str, Any]
    prev_hash: str
    entry_hash: str
    leaf_hash: str

    @classmethod
    def from_row(cls, row: EntryRow) -> AuditEntry:
        actor = object.__new__(Actor)  # stored rows were validated when written
        object.__setattr__(actor, "kind", row.actor_kind)
        object.__setattr__(actor, "id", row.actor_id)
        object.__setattr__(actor, "auth", row.actor_auth)
        return cls(
            seq=row.seq,
            time_us=row.time_us,
            actor=actor,
            action=row.action,
            target=row.target,
            outcome=row.outcome,
            reason=row.reason,
            request_id=row.request_id,
            trace_id=row.trace_id,
            details=json.loads(row.details),
            prev_hash=row.prev_hash,
            entry_hash=row.entry_hash,
            leaf_hash=row.leaf_hash,
        )

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.time_us / 1_000_000, UTC)

    def canonical_object(self) -> dict[str, Any]:
        """The object whose RFC 8785 bytes are hashed (and exported)."""
        return {
            "action": self.action,
            "actor": {"auth": self.actor.auth, "id": self.actor.id, "kind": self.actor.kind},
            "details": self.details,
            "outcome": self.outcome,
            "reason": self.reason,
            "requestId": self.request_id,
            "seq": self.seq,
            "target": self.target,
            "time": self.time_us,
            "traceId": self.trace_id,
            "v": ENTRY_VERSION,
        }

    def document(self) -> dict[str, Any]:
        """The API's JSON form: the hashed fields, a readable time and the hashes."""
        document = self.canonical_object()
        del document["v"], document["time"]
        return {
            **document,
            "time": rfc3339(self.time_us),
            "timeUs": self.time_us,
            "prevHash": self.prev_hash,
            "entryHash": self.entry_hash,
            "leafHash": self.leaf_hash,
        }
