"""Inclusion proofs from the store: a few stored subtree hashes instead of every leaf.

Appends keep every complete subtree of 2^NODE_LEVEL leaves or more; archiving keeps the
compact range at its boundary. A proof then reads O(log n) nodes and at most two blocks of
leaves, whatever the size of the trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from courtyard.audit._checkpoints import Checkpoint
from courtyard.audit._errors import ProofUnavailable, TrailDamaged
from courtyard.audit._merkle import (
    CompactRange,
    aligned_blocks,
    node_hash,
    path_ranges,
    range_hash,
    verify_inclusion,
)
from courtyard.audit._store import AuditStore, NodeKey

# Subtrees of 256 leaves and up are stored as they complete (about 1 row per 256 entries).
NODE_LEVEL: Final = 8


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """RFC 6962 §2.1.1 audit path of entry ``seq`` (leaf ``seq - 1``) in a signed tree."""

    seq: int
    leaf_hash: str
    audit_path: tuple[str, ...]
    checkpoint: Checkpoint

    @property
    def leaf_index(self) -> int:
        return self.seq - 1

    @property
    def tree_size(self) -> int:
        return self.checkpoint.tree_size

    @property
    def root(self) -> str:
        return self.checkpoint.root

    def is_valid(self) -> bool:
        """Whether the path leads from the leaf to the checkpoint's root (RFC 9162 §2.1.3.2)."""
        return verify_inclusion(
            bytes.fromhex(self.leaf_hash),
            self.leaf_index,
            self.tree_size,
            [bytes.fromhex(h) for h in self.audit_path],
            bytes.fromhex(self.root),
        )

    def document(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "leafIndex": self.leaf_index,
            "treeSize": self.tree_size,
            "leafHash": self.leaf_hash,
            "auditPath": list(self.audit_path),
            "root": self.root,
            "checkpoint": self.checkpoint.document(),
        }


def compact_nodes(size: int) -> list[NodeKey]:
    """The (level, index) of the subtrees in the compact range of ``size`` leaves."""
    return [(level, index) for level, index in aligned_blocks(0, size)]


def build_inclusion_proof(
    store: AuditStore, seq: int, checkpoint: Checkpoint, archived_through: int
) -> InclusionProof:
    """The audit path of entry ``seq`` against ``checkpoint``, from the fewest stored hashes."""
    index, size = seq - 1, checkpoint.tree_size
    ranges = path_ranges(index, size)
    wanted: set[NodeKey] = set(compact_nodes(archived_through))
    leaf_spans: list[tuple[int, int]] = [(index, index + 1)]
    for start, end in ranges:
        for level, block in aligned_blocks(start, end):
            if level >= NODE_LEVEL:
                wanted.add((level, block))
                continue
            first, last = block << level, (block + 1) << level
            if last > archived_through:
                leaf_spans.append((max(first, archived_through), last))
    nodes = {key: bytes.fromhex(h) for key, h in store.nodes(wanted).items()}
    leaves: dict[int, bytes] = {}
    for first, last in _merged(leaf_spans):
        found = store.leaves(first + 1, last)  # leaf i is entry i + 1
        leaves.update({s - 1: bytes.fromhex(h) for s, h in found.items()})
    if index not in leaves:
        raise ProofUnavailable(seq, "the entry is not in the store")

    def block_hash(level: int, block: int) -> bytes:
        if (level, block) in nodes:
            return nodes[level, block]
        if level == 0:
            if block in leaves:
                return leaves[block]
            raise ProofUnavailable(seq, f"the hash of entry {block + 1} is not stored")
        return node_hash(block_hash(level - 1, 2 * block), block_hash(level - 1, 2 * block + 1))

    proof = InclusionProof(
        seq=seq,
        leaf_hash=leaves[index].hex(),
        audit_path=tuple(range_hash(a, b, block_hash).hex() for a, b in ranges),
        checkpoint=checkpoint,
    )
    if not proof.is_valid():
        raise ProofUnavailable(
            seq, "the stored hashes do not lead to the signed root (run `courtyard audit verify`)"
        )
    return proof


def archive_nodes(checkpoint: Checkpoint) -> list[tuple[int, int, bytes]]:
    """The compact range at ``checkpoint`` as nodes: what proofs need once entries are gone."""
    frontier = CompactRange(checkpoint.tree_size, [bytes.fromhex(h) for h in checkpoint.frontier])
    if frontier.root().hex() != checkpoint.root:
        raise TrailDamaged(checkpoint.tree_size, "the stored frontier does not match its root")
    return frontier.nodes()


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
