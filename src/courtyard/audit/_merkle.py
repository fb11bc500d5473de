"""RFC 6962 Merkle trees over the audit entries: hashes, an O(log n) frontier, proofs.

The tree lets an auditor check one entry (inclusion proof) or that a later checkpoint extends
an earlier one (consistency proof) without reading the whole trail. Proofs follow RFC 6962
§2.1.1-2.1.2; their verification follows RFC 9162 §2.1.3.2 and §2.1.4.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Final

HASH_SIZE: Final = 32
# RFC 6962 §2.1: MTH({}) = SHA-256(), leaves prefixed 0x00, interior nodes 0x01.
EMPTY_ROOT: Final = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256

# Hash of the perfect, aligned subtree (level, index): leaves [index·2^level, (index+1)·2^level).
BlockHash = Callable[[int, int], bytes]
# (level, index, hash) of a perfect aligned subtree.
Node = tuple[int, int, bytes]


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 §2.1: the leaf hash SHA-256(0x00 || data)."""
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: the interior node hash SHA-256(0x01 || left || right)."""
    return _sha256(b"\x01" + left + right).digest()


class CompactRange:
    """The roots of the perfect subtrees that cover leaves [0, size), largest first.

    One root per set bit of ``size``: appending is O(log n) amortized O(1), the Merkle Tree
    Hash of everything so far is a fold of at most log2(n) hashes (the "frontier").
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a compact range of size {size} has {size.bit_count()} hashes")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        """How many leaves the range covers."""
        return self._size

    @property
    def hashes(self) -> list[bytes]:
        """The subtree roots, largest (leftmost) first."""
        return list(self._hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash on the right."""
        hashes = self._hashes
        h = leaf
        n = self._size
        while n & 1:
            h = node_hash(hashes.pop(), h)
            n >>= 1
        hashes.append(h)
        self._size += 1

    def append_collecting(self, leaf: bytes, min_level: int, into: list[Node]) -> None:
        """Like :meth:`append`, adding each subtree it completes at ``min_level`` or above."""
        hashes = self._hashes
        h = leaf
        n = self._size
        size = self._size + 1
        level = 0
        while n & 1:
            h = node_hash(hashes.pop(), h)
            n >>= 1
            level += 1
            if level >= min_level:
                into.append((level, (size >> level) - 1, h))
        hashes.append(h)
        self._size = size

    def root(self) -> bytes:
        """RFC 6962 §2.1 Merkle Tree Hash of the leaves so far."""
        if not self._hashes:
            return EMPTY_ROOT
        root = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            root = node_hash(h, root)
        return root

    def nodes(self) -> list[Node]:
        """The subtree roots as (level, index, hash), largest first."""
        nodes: list[Node] = []
        start = 0
        for level in reversed(range(self._size.bit_length())):
            if self._size >> level & 1:
                nodes.append((level, start >> level, self._hashes[len(nodes)]))
                start += 1 << level
        return nodes


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 Merkle Tree Hash over ``leaves`` (leaf hashes, not entry bytes)."""
    frontier = CompactRange()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def aligned_blocks(start: int, end: int) -> list[tuple[int, int]]:
    """[start, end) as the greedy sequence of perfect aligned subtrees (level, index)."""
    blocks: list[tuple[int, int]] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        blocks.append((level, start >> level))
        start += 1 << level
    return blocks


def range_hash(start: int, end: int, block: BlockHash) -> bytes:
    """MTH(D[start:end]) from perfect aligned subtrees, for ranges of RFC 6962's recursion.

    Such a range starts on a multiple of its largest power-of-two part, so it is the greedy
    sequence of aligned blocks, folded from the right exactly as the recursion nests them.
    """
    hashes = [block(level, index) for level, index in aligned_blocks(start, end)]
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for h in reversed(hashes[:-1]):
        root = node_hash(h, root)
    return root


def _split(n: int) -> int:
    # RFC 6962 §2.1: k is the largest power of two smaller than n.
    return 1 << ((n - 1).bit_length() - 1)


def path_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make up PATH(index, D[0:size]), leaf to root."""
    ranges: list[tuple[int, int]] = []
    start, end, m = 0, size, index
    while end - start > 1:  # RFC 6962 §2.1.1
        k = _split(end - start)
        if m < k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose hashes make up PROOF(old_size, D[0:new_size]) (RFC 6962 §2.1.2)."""
    ranges: list[tuple[int, int]] = []
    if not 0 < old_size < new_size:
        return ranges
    start, end, m, whole = 0, new_size, old_size, True
    while True:
        n = end - start
        if m == n:  # SUBPROOF(m, D[m], b): [] if b else [MTH(D[m])]
            if not whole:
                ranges.append((start, end))
            break
        k = _split(n)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
            m -= k
            whole = False
    ranges.reverse()
    return ranges


class _Levels:
    """Every perfect aligned subtree of a list of leaves, built once in O(n)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.levels: list[Sequence[bytes]] = [leaves]
        level = leaves
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            self.levels.append(level)

    def block(self, level: int, index: int) -> bytes:
        return self.levels[level][index]


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """RFC 6962 §2.1.1 audit path of leaf ``index`` in the tree of the first ``size`` leaves."""
    size = len(leaves) if size is None else size
    if not 0 <= index < size <= len(leaves):
        raise ValueError(f"no leaf {index} in a tree of {size} (of {len(leaves)} leaves)")
    levels = _Levels(leaves[:size])
    return [range_hash(a, b, levels.block) for a, b in path_ranges(index, size)]


def consistency_proof(
    leaves: Sequence[bytes], old_size: int, new_size: int | None = None
) -> list[bytes]:
    """RFC 6962 §2.1.2 proof that the tree of ``old_size`` leaves is a prefix of ``new_size``."""
    new_size = len(leaves) if new_size is None else new_size
    if not 0 <= old_size <= new_size <= len(leaves):
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    levels = _Levels(leaves[:new_size])
    return [range_hash(a, b, levels.block) for a, b in consistency_ranges(old_size, new_size)]


def _well_formed(hashes: Sequence[bytes]) -> bool:
    return all(len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree ``size``/``root``.

    RFC 9162 §2.1.3.2, step by step.
    """
    if not 0 <= index < size or not _well_formed([leaf, root, *proof]):
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows the tree ``old_size``/``old_root`` is a prefix of the new one.

    RFC 9162 §2.1.4.2, with the edge cases it leaves implicit: equal sizes need equal roots
    and no proof; the empty tree is a prefix of everything.
    """
    if not 0 <= old_size <= new_size or not _well_formed(proof):
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # an exact power of two: its root is part of the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
