"""Signed checkpoints of the audit trail: the statement, its signature, the file. Pure.

A checkpoint states, at one moment, the Merkle root (:mod:`gis.merkle`) over every case's
chain head, with the number of cases and events, signed with ed25519. The signed bytes are the
statement as canonical JSON (keys sorted, no spaces, ASCII): ``statement_bytes``.

The statement::

    {"format": "jointgrid-checkpoint/1", "tree": "rfc9162-sha256",
     "key_id": <signer's key id>, "side": <signer's side code or null>, "seq": <n, from 1>,
     "made_at": <ISO 8601 UTC>, "cases": <int>, "events": <int>,
     "root": <hex>, "prev_root": <hex of the signer's checkpoint n-1, or null>}

``prev_root`` chains a signer's checkpoints, so one left out of a series shows.

A checkpoint file (JSON) holds ``statement``, ``signature`` (base64), ``public_key_id`` and
``heads``: the chain heads ``[case id, seq, head hex]`` of the cases whose head changed since
checkpoint n-1 (all of them in the first). The heads are not signed: the signed root proves
them, once the heads of checkpoints 1..n are put together (the latest per case).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from gis.errors import InvalidInput
from gis.merkle import Head

FORMAT: Final[str] = "jointgrid-checkpoint/1"
TREE: Final[str] = "rfc9162-sha256"


class CheckpointRefused(InvalidInput):
    """A checkpoint whose signature does not hold, or that another key signed."""

    code = "checkpoint_refused"


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(public_raw: bytes) -> str:
    """A key's id: the first 16 hex digits of SHA-256 over its 32 raw bytes."""
    return hashlib.sha256(public_raw).hexdigest()[:16]


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def load_public(pem_or_raw: bytes) -> Ed25519PublicKey:
    """An ed25519 public key from PEM (SubjectPublicKeyInfo) or its 32 raw bytes."""
    if len(pem_or_raw) == 32:
        return Ed25519PublicKey.from_public_bytes(pem_or_raw)
    try:
        key = load_pem_public_key(pem_or_raw)
    except ValueError as exc:
        raise InvalidInput(f"not a public key: {exc}", {"expected": "an ed25519 PEM"}) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput("the public key is not an ed25519 key", {"expected": "ed25519"})
    return key


def statement_bytes(statement: Mapping[str, Any]) -> bytes:
    """The exact bytes signed."""
    return json.dumps(statement, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def make_statement(
    *,
    key_id_: str,
    side: str | None,
    seq: int,
    made_at: datetime,
    cases: int,
    events: int,
    root: bytes,
    prev_root: bytes | None,
) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "tree": TREE,
        "key_id": key_id_,
        "side": side,
        "seq": seq,
        "made_at": made_at.astimezone(UTC).isoformat(),
        "cases": cases,
        "events": events,
        "root": root.hex(),
        "prev_root": None if prev_root is None else prev_root.hex(),
    }


def sign(statement: Mapping[str, Any], key: Ed25519PrivateKey) -> bytes:
    return key.sign(statement_bytes(statement))


@dataclass(frozen=True)
class Checked:
    """A checkpoint whose signature held."""

    statement: dict[str, Any]
    signature: bytes
    public_raw: bytes
    heads: list[Head]

    @property
    def key_id(self) -> str:
        return str(self.statement["key_id"])

    @property
    def seq(self) -> int:
        return int(self.statement["seq"])

    @property
    def root(self) -> bytes:
        return bytes.fromhex(self.statement["root"])


def verify_signature(statement: Mapping[str, Any], signature: bytes, public_raw: bytes) -> bool:
    """Whether ``signature`` is ``public_raw``'s ed25519 signature over the statement."""
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, statement_bytes(statement))
    except (InvalidSignature, ValueError):
        return False
    return True


def to_file(
    statement: Mapping[str, Any], signature: bytes, heads: Iterable[Head]
) -> dict[str, Any]:
    """The JSON document of a checkpoint file."""
    return {
        "statement": dict(statement),
        "signature": base64.b64encode(signature).decode(),
        "public_key_id": statement["key_id"],
        "heads": [[c, s, h.hex()] for c, s, h in heads],
    }


def check_file(doc: Any, public: Ed25519PublicKey, *, name: str = "the file") -> Checked:
    """A checkpoint file checked against ``public``; ``CheckpointRefused`` says why not."""
    raw = raw_public(public)
    want = key_id(raw)
    try:
        statement = dict(doc["statement"])
        signature = base64.b64decode(doc["signature"], validate=True)
        heads = [(str(c), int(s), bytes.fromhex(h)) for c, s, h in doc.get("heads") or []]
        named = str(doc.get("public_key_id") or statement.get("key_id"))
        if statement.get("format") != FORMAT or statement.get("tree") != TREE:
            raise ValueError(f"format {statement.get('format')!r}, tree {statement.get('tree')!r}")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointRefused(
            f"{name} is not a JointGrid checkpoint file: {exc}", {"file": name}
        ) from exc
    if named != want or statement.get("key_id") != want:
        raise CheckpointRefused(
            f"{name} was signed by key {named}, not by the given public key {want}: refused",
            {"file": name, "signed_by": named, "expected": want},
        )
    if not verify_signature(statement, signature, raw):
        raise CheckpointRefused(
            f"{name}: the signature does not match the statement (forged or altered): refused",
            {"file": name, "key_id": want, "seq": statement.get("seq")},
        )
    return Checked(statement, signature, raw, heads)
