"""How the audit trail is set up: where its key and files live, how often it signs and commits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Where the trail keeps its key and files, and how often it signs and commits."""

    data_dir: Path
    checkpoint_every: int = 1000  # entries
    checkpoint_interval: float = 10.0  # seconds
    batch_max: int = 512  # entries per transaction

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1 or self.batch_max < 1 or self.checkpoint_interval <= 0:
            raise ValueError("checkpoint_every, checkpoint_interval and batch_max must be > 0")

    @property
    def key_file(self) -> Path:
        return self.data_dir / "keys" / "audit-ed25519.pem"

    @property
    def checkpoints_file(self) -> Path:
        return self.data_dir / "audit" / "checkpoints.jsonl"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "audit" / "archive"
