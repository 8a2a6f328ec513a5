"""The pure parts of the audit trail's checks: the Merkle tree, the replay, the signature."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gis import checkpoint as cp
from gis import merkle
from gis.trail import check, replay

LADDER = (("village", 24.0), ("town", 48.0), ("district", 72.0))
T0 = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
A, B = "510904", "500152"


def rfc9162_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 section 2.1.1, as written: split at the largest power of two below n."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(rfc9162_root(leaves[:k]), rfc9162_root(leaves[k:]))


def heads(n: int) -> list[merkle.Head]:
    return [
        (f"00510904-0000-4000-8000-{i:012x}", i % 7 + 1, hashlib.sha256(str(i).encode()).digest())
        for i in range(n)
    ]


@pytest.mark.parametrize("n", [*range(0, 18), 31, 32, 33, 100])
def test_the_root_is_rfc9162s_and_every_leaf_proves_its_inclusion(n: int) -> None:
    hs = heads(n)
    leaves = [merkle.leaf_hash(*h) for h in hs]
    root = merkle.root(reversed(hs))  # sorted by case id inside
    assert root == rfc9162_root(leaves) == merkle.root_of_leaves(leaves)
    b = merkle.RootBuilder()
    for leaf in leaves:
        b.add(leaf)
    assert b.root() == root and b.size == n
    for i, leaf in enumerate(leaves):
        path = merkle.inclusion_proof(leaves, i)
        assert merkle.verify_inclusion(leaf, i, n, path, root)
        other = merkle.leaf_hash(hs[i][0], hs[i][1] + 1, hs[i][2])  # one more event: not the same
        assert not merkle.verify_inclusion(other, i, n, path, root)


def test_a_leaf_is_case_id_seq_and_head_with_domain_separation() -> None:
    cid, seq, head = heads(1)[0]
    data = merkle.leaf_data(cid, seq, head)
    assert data == cid.encode() + seq.to_bytes(4, "big") + head and len(data) == 72
    assert merkle.leaf_hash(cid, seq, head) == hashlib.sha256(b"\x00" + data).digest()
    assert merkle.node_hash(b"l", b"r") == hashlib.sha256(b"\x01lr").digest()
    with pytest.raises(ValueError, match="two heads"):
        merkle.root([(cid, 1, head), (cid, 2, head)])


def ev(seq, action, frm, to, side=A, note=None, minutes=0, **payload):  # type: ignore[no-untyped-def]
    return {
        "seq": seq,
        "action": action,
        "from_status": frm,
        "to_status": to,
        "actor_side": side,
        "note": note,
        "payload": payload,
        "at": T0 + timedelta(minutes=minutes),
    }


def closed_trail() -> list[dict]:  # type: ignore[type-arg]
    due = (T0 + timedelta(hours=72)).isoformat()
    due2 = (T0 + timedelta(minutes=2, hours=72)).isoformat()
    return [
        ev(1, "report", None, "reported", side=None, sides=[A, B], due_at=due),
        ev(2, "accept", "reported", "accepted", minutes=1),
        ev(3, "dispatch", "accepted", "dispatched", minutes=2, due_at={"from": due, "to": due2}),
        ev(4, "start", "dispatched", "in_progress", minutes=3),
        ev(5, "resolve", "in_progress", "resolved", note="done", minutes=4),
        ev(6, "verify", "resolved", "resolved", minutes=5),
        ev(7, "verify", "resolved", "verified", side=B, minutes=6),
        ev(8, "close", "verified", "closed", minutes=7),
    ]


def stored(**over):  # type: ignore[no-untyped-def]
    row = {
        "id": "00510904-0000-4000-8000-000000000001",
        "status": "closed",
        "sides": [A, B],
        "due_at": T0 + timedelta(minutes=2, hours=72),
        "escalation_level": 0,
        "verified_sides": [A, B],
        "merged_into": None,
    }
    return {**row, **over}


def test_a_closed_trail_replays_to_its_case() -> None:
    r = replay(closed_trail(), ladder=LADDER)
    assert r.state is not None and r.state.status == "closed" and not r.problems
    assert set(r.state.verified_sides) == {A, B}
    assert check(stored(), closed_trail(), ladder=LADDER) == []


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"status": "verified"}, "status"),
        ({"escalation_level": 1}, "escalation_level"),
        ({"verified_sides": [A]}, "verified_sides"),
        ({"merged_into": "00510904-0000-4000-8000-000000000009"}, "merged_into"),
        ({"due_at": T0}, "due_at"),
        ({"sides": [A]}, "sides"),
    ],
)
def test_each_stored_field_that_differs_is_named(over, field) -> None:  # type: ignore[no-untyped-def]
    problems = check(stored(**over), closed_trail(), ladder=LADDER)
    assert len(problems) == 1 and problems[0].startswith(field)


def test_an_event_the_workflow_refuses_is_named() -> None:
    trail = closed_trail()
    del trail[5:7]  # no sign-off at all, yet closed
    trail[5] = {**trail[5], "seq": 6, "from_status": "resolved"}
    problems = check(stored(), trail, ladder=LADDER)
    assert problems and "event 6 (close)" in problems[0]
    gap = [e for e in closed_trail() if e["seq"] != 4]
    assert "event 4 is missing" in check(stored(), gap, ladder=LADDER)[0]
    assert check(stored(), [], ladder=LADDER) == ["its trail has no events"]


def test_a_signed_statement_checks_and_an_altered_one_does_not() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    kid = cp.key_id(cp.raw_public(key.public_key()))
    st = cp.make_statement(
        key_id_=kid, side=A, seq=1, made_at=T0, cases=2, events=9, root=b"\x01" * 32, prev_root=None
    )
    doc = cp.to_file(st, cp.sign(st, key), heads(2))
    assert cp.check_file(doc, key.public_key()).root == b"\x01" * 32
    forged = {**doc, "statement": {**st, "root": "02" * 32}}
    with pytest.raises(cp.CheckpointRefused, match="forged or altered"):
        cp.check_file(forged, key.public_key())
    with pytest.raises(cp.CheckpointRefused, match="not by the given public key"):
        cp.check_file(doc, other.public_key())


def test_an_older_trail_without_its_first_due_time() -> None:
    """Trails written before the report recorded its due time: the first due time is taken as
    unknown (not compared) until an event sets one, and an automatic escalation before that
    is accepted."""
    old = closed_trail()
    del old[0]["payload"]["due_at"]
    assert check(stored(), old, ladder=LADDER) == []
    report = {**old[0]}
    esc = ev(2, "escalate", "reported", "reported", side=None, minutes=60 * 30, automatic=True)
    esc["payload"]["due_at"] = {"from": None, "to": (T0 + timedelta(hours=78)).isoformat()}
    row = stored(status="reported", verified_sides=[], escalation_level=1, due_at=T0)
    assert check(row, [report, esc], ladder=LADDER) == [
        f"due_at is {T0.isoformat()} but its trail says {(T0 + timedelta(hours=78)).isoformat()}"
    ]
    assert check({**row, "due_at": T0 + timedelta(hours=78)}, [report, esc], ladder=LADDER) == []
