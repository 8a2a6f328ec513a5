"""The Merkle tree over every case's chain head, as a checkpoint signs it. Pure.

The tree is RFC 9162's (Certificate Transparency 2.0, section 2.1) with SHA-256, so that
another side can check a root with any implementation of that RFC:

- the leaves are the cases, sorted by case id (the lowercase hyphenated UUID text);
- a case's leaf data is ``case_id`` as ASCII (36 bytes) ``||`` its head's ``seq`` as an
  unsigned 4-byte big-endian integer ``||`` its head digest (the 32-byte ``hash`` of its last
  event in ``incident_events``): 72 bytes;
- ``leaf hash = SHA-256(0x00 || leaf data)``, ``node hash = SHA-256(0x01 || left || right)``;
- a tree of n > 1 leaves splits at k, the largest power of two below n (computed here
  bottom-up: a level's unpaired last node moves up unchanged, which gives the same root);
- the empty tree's root is ``SHA-256("")``.

Hand-written rather than taken from a library: it is forty lines, and the exact leaf and node
definition must be what the signed checkpoint promises, checkable by the other side by hand.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence

Head = tuple[str, int, bytes]
"""One case's chain head: (case id, seq of its last event, that event's hash)."""

_sha = hashlib.sha256


def leaf_data(case_id: str, seq: int, head: bytes) -> bytes:
    """The 72 bytes a case contributes: id (ASCII), seq (4 bytes big-endian), head digest."""
    cid = case_id.lower().encode("ascii")
    if len(cid) != 36 or len(head) != 32 or not 0 <= seq < 2**32:
        raise ValueError(f"not a chain head: {case_id!r}, seq {seq}, {len(head)}-byte digest")
    return cid + seq.to_bytes(4, "big") + head


def leaf_hash(case_id: str, seq: int, head: bytes) -> bytes:
    """SHA-256(0x00 || leaf data)."""
    return _sha(b"\x00" + leaf_data(case_id, seq, head)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return _sha(b"\x01" + left + right).digest()


def sorted_heads(heads: Iterable[Head]) -> list[Head]:
    """The heads in leaf order (by case id); one head per case."""
    out = sorted(heads, key=lambda h: h[0])
    for a, b in itertools.pairwise(out):
        if a[0] == b[0]:
            raise ValueError(f"case {a[0]} has two heads")
    return out


def root_of_leaves(leaves: Sequence[bytes]) -> bytes:
    """The root over leaf hashes already in order."""
    if not leaves:
        return _sha(b"").digest()
    level = list(leaves)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root(heads: Iterable[Head]) -> bytes:
    """The root over every case's head (sorted here by case id)."""
    return root_of_leaves([leaf_hash(*h) for h in sorted_heads(heads)])


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` (bottom first), RFC 9162 section 2.1.3."""
    if not 0 <= index < len(leaves):
        raise IndexError(index)
    path: list[bytes] = []
    level, i = list(leaves), index
    while len(level) > 1:
        sib = i ^ 1
        if sib < len(level):
            path.append(level[sib])
        nxt = [node_hash(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level, i = nxt, i // 2
    return path


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root_: bytes
) -> bool:
    """Whether ``leaf`` sits at ``index`` of a tree of ``size`` leaves with root ``root_``
    (RFC 9162 section 2.1.3.2, bottom-up)."""
    if not 0 <= index < size:
        return False
    h, i, n, k = leaf, index, size, 0
    while n > 1:
        if i % 2 == 1:
            if k >= len(path):
                return False
            h = node_hash(path[k], h)
            k += 1
        elif i + 1 < n:
            if k >= len(path):
                return False
            h = node_hash(h, path[k])
            k += 1
        i, n = i // 2, (n + 1) // 2
    return k == len(path) and h == root_


class RootBuilder:
    """The same root as :func:`root_of_leaves`, fed one leaf at a time in order: memory grows
    with log n, not n (2,000,000 heads need no list). RFC 9162's tree is a row of perfect
    subtrees, largest first, so a binary counter of subtree roots builds it."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []
        self.size = 0

    def add(self, leaf: bytes) -> None:
        size, h = 1, leaf
        while self._stack and self._stack[-1][0] == size:
            left = self._stack.pop()[1]
            size, h = size * 2, node_hash(left, h)
        self._stack.append((size, h))
        self.size += 1

    def root(self) -> bytes:
        if not self._stack:
            return _sha(b"").digest()
        h = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            h = node_hash(left, h)
        return h
