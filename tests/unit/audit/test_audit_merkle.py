"""RFC 6962 Merkle trees: the optimized code against the RFC's own recursive definitions and
against the published test vectors of the certificate-transparency reference tree."""

from __future__ import annotations

import functools
import hashlib

import pytest

from courtyard.audit import (
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    verify_consistency,
    verify_inclusion,
)

# -- a reference written straight from RFC 6962 §2.1, §2.1.1 and §2.1.2 ----------------------


def _k(n: int) -> int:
    """The largest power of two smaller than n (RFC 6962 §2.1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@functools.cache
def ref_mth(data: tuple[bytes, ...]) -> bytes:
    n = len(data)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + data[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + ref_mth(data[:k]) + ref_mth(data[k:])).digest()


def ref_path(m: int, data: tuple[bytes, ...]) -> list[bytes]:
    n = len(data)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, data[:k]), ref_mth(data[k:])]
    return [*ref_path(m - k, data[k:]), ref_mth(data[:k])]


def ref_subproof(m: int, data: tuple[bytes, ...], b: bool) -> list[bytes]:
    n = len(data)
    if m == n:
        return [] if b else [ref_mth(data)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, data[:k], b), ref_mth(data[k:])]
    return [*ref_subproof(m - k, data[k:], False), ref_mth(data[:k])]


def ref_proof(m: int, data: tuple[bytes, ...]) -> list[bytes]:
    return ref_subproof(m, data, True)


DATA = tuple(bytes([i, i * 7 % 256]) * (i % 4) for i in range(64))
LEAVES = [leaf_hash(d) for d in DATA]


@pytest.mark.parametrize("size", range(1, 65))
def test_root_and_every_inclusion_path_match_the_rfc(size: int) -> None:
    data = DATA[:size]
    assert merkle_root(LEAVES[:size]) == ref_mth(data)
    for index in range(size):
        proof = inclusion_proof(LEAVES, index, size)
        assert proof == ref_path(index, data), (index, size)
        assert verify_inclusion(LEAVES[index], index, size, proof, ref_mth(data))


@pytest.mark.parametrize("size", range(1, 65))
def test_every_consistency_proof_matches_the_rfc(size: int) -> None:
    data = DATA[:size]
    for old in range(1, size + 1):
        proof = consistency_proof(LEAVES, old, size)
        assert proof == ref_proof(old, data), (old, size)
        assert verify_consistency(old, size, ref_mth(DATA[:old]), ref_mth(data), proof)


def test_the_compact_range_agrees_with_the_rfc_at_every_size() -> None:
    frontier = CompactRange()
    for size in range(1, 65):
        frontier.append(LEAVES[size - 1])
        assert frontier.root() == ref_mth(DATA[:size])
        assert len(frontier.hashes) == size.bit_count()
        resumed = CompactRange(size, frontier.hashes)
        assert resumed.root() == frontier.root()
        for level, index, digest in frontier.nodes():
            first = index << level
            assert digest == ref_mth(DATA[first : first + (1 << level)])


def test_append_collecting_reports_each_completed_subtree_once() -> None:
    frontier = CompactRange()
    nodes: list[tuple[int, int, bytes]] = []
    for leaf in LEAVES:
        frontier.append_collecting(leaf, 2, nodes)
    assert sorted((level, index) for level, index, _ in nodes) == sorted(
        (level, index) for level in range(2, 7) for index in range(64 >> level)
    )
    for level, index, digest in nodes:
        first = index << level
        assert digest == ref_mth(DATA[first : first + (1 << level)])


# -- published vectors: transparency-dev/merkle testonly (the CT reference tree) --------------

CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, audit path)
CT_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (old size, new size, proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
CT_LEAF_HASHES = [leaf_hash(data) for data in CT_LEAVES]


@pytest.mark.parametrize("size", range(9))
def test_published_roots_of_the_reference_tree(size: int) -> None:
    assert merkle_root(CT_LEAF_HASHES[:size]).hex() == CT_ROOTS[size]
    assert ref_mth(tuple(CT_LEAVES[:size])).hex() == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), CT_INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, path: list[str]) -> None:
    proof = inclusion_proof(CT_LEAF_HASHES, index, size)
    assert [h.hex() for h in proof] == path
    root = bytes.fromhex(CT_ROOTS[size])
    assert verify_inclusion(CT_LEAF_HASHES[index], index, size, proof, root)
    for wrong in _corrupted_inclusions(index, size, proof, root):
        assert not verify_inclusion(*wrong)


@pytest.mark.parametrize(("old", "new", "path"), CT_CONSISTENCY)
def test_published_consistency_proofs(old: int, new: int, path: list[str]) -> None:
    proof = consistency_proof(CT_LEAF_HASHES, old, new)
    assert [h.hex() for h in proof] == path
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, proof)
    if proof:
        for wrong in _corrupted_consistencies(old, new, old_root, new_root, proof):
            assert not verify_consistency(*wrong)


def _flip(proof: list[bytes], i: int) -> list[bytes]:
    changed = list(proof)
    changed[i] = bytes([changed[i][0] ^ 8]) + changed[i][1:]
    return changed


def _corrupted_inclusions(
    index: int, size: int, proof: list[bytes], root: bytes
) -> list[tuple[bytes, int, int, list[bytes], bytes]]:
    leaf = CT_LEAF_HASHES[index]
    other = hashlib.sha256(b"other").digest()
    probes = [
        (leaf, index - 1, size, proof, root),
        (leaf, index + 1, size, proof, root),
        (leaf, index ^ 2, size, proof, root),
        (leaf, index, size * 2, proof, root),
        (leaf, index, size // 2, proof, root),
        (other, index, size, proof, root),
        (leaf, index, size, proof, other),
        (leaf, index, size, [*proof, b""], root),
        (leaf, index, size, [*proof, root], root),
        (leaf, index, size, [root, *proof], root),
    ]
    probes += [(leaf, index, size, _flip(proof, i), root) for i in range(len(proof))]
    if proof:
        probes.append((leaf, index, size, proof[:-1], root))
    return probes


def _corrupted_consistencies(
    old: int, new: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> list[tuple[int, int, bytes, bytes, list[bytes]]]:
    probes = [
        (old - 1, new, old_root, new_root, proof),
        (old + 1, new, old_root, new_root, proof),
        (old ^ 2, new, old_root, new_root, proof),
        (old, new * 2, old_root, new_root, proof),
        (old, new // 2, old_root, new_root, proof),
        (old, new, b"wrong root", new_root, proof),
        (old, new, old_root, b"wrong root", proof),
        (old, new, new_root, old_root, proof),
        (old, new, old_root, new_root, []),
        (old, new, old_root, new_root, [*proof, old_root]),
        (old, new, old_root, new_root, [new_root, *proof]),
        (old, new, old_root, new_root, [proof[0], *proof]),
        (old, new, old_root, new_root, proof[:-1]),
    ]
    return probes + [(old, new, old_root, new_root, _flip(proof, i)) for i in range(len(proof))]


def test_consistency_edge_cases() -> None:
    empty = hashlib.sha256(b"").digest()
    some = hashlib.sha256(b"some").digest()
    assert verify_consistency(0, 0, some, some, [])
    assert verify_consistency(0, 5, some, empty, [])
    assert verify_consistency(3, 3, some, some, [])
    assert not verify_consistency(3, 3, some, empty, [])
    assert not verify_consistency(3, 3, some, some, [empty])
    assert not verify_consistency(2, 1, some, some, [])
    assert not verify_consistency(1, 2, some, empty, [])


def test_inclusion_edge_cases() -> None:
    leaf = CT_LEAF_HASHES[0]
    assert verify_inclusion(leaf, 0, 1, [], leaf)
    assert not verify_inclusion(leaf, 0, 0, [], leaf)
    assert not verify_inclusion(leaf, 1, 1, [], leaf)
    assert not verify_inclusion(b"", 0, 1, [], b"")
    with pytest.raises(ValueError, match="no leaf"):
        inclusion_proof(CT_LEAF_HASHES, 8)
