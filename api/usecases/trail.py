"""Audit-trail use-cases: the case-against-trail check, signed checkpoints, and verify.

Shared by the server (the check before each transition, the checkpoint task) and the CLI
(``jointgrid audit-trail ...``). The pure parts are gis/trail.py (replay), gis/merkle.py (the
tree) and gis/checkpoint.py (statement, signature, file); storage is layers/audit.py.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from api import settings
from api.settings import ROOT
from gis import checkpoint as cp
from gis import merkle
from gis.errors import InvalidInput
from gis.trail import TrailDrift, check
from gis.workflow import Ladder
from layers import audit, incidents, outbox
from layers.db import Conn

log = logging.getLogger("jointgrid.audit")

LOCAL: Final[str] = "local"
CHECKS: Final[tuple[str, ...]] = ("chain", "state", "checkpoint")
"""What ``verify`` checks: the hash chain, each case against its trail, the checkpoints."""

CANNOT_PROVE: Final[tuple[str, ...]] = (
    "Anything done before the first checkpoint: a trail rewritten before it was first signed "
    "looks like any other trail.",
    "Changes made after the latest checkpoint that left no other trace: events appended since "
    "then can be edited with the chain recomputed, or removed, and no checkpoint holds them "
    "yet (the case-against-trail check still sees a stored state with no event behind it).",
    "A case created after the latest checkpoint and removed with its whole trail before the "
    "next one.",
)

# --- the check the server makes before every transition -----------------------------------


def case_problems(conn: Conn, row: dict[str, Any], *, ladder: Ladder) -> list[str]:
    """What is wrong between a case row (as ``layers.incidents.get`` gives it) and its trail.

    One indexed read of the case's events (a handful) and a pure replay: cheap enough for
    every transition."""
    return check(row, incidents.events(conn, row["id"]), ladder=ladder)


def refuse_drift(conn: Conn, row: dict[str, Any], *, ladder: Ladder) -> None:
    """Raise ``TrailDrift`` (409 ``case_trail_drift``), and log it, when the case row is not
    what its trail says; call inside the transition's transaction, after the row lock."""
    problems = case_problems(conn, row, ladder=ladder)
    if problems:
        log.error("case %s differs from its audit trail: %s", row["code"], "; ".join(problems))
        raise TrailDrift(
            f"case {row['code']} differs from its audit trail, so no action is taken on it: "
            f"{problems[0]}. An administrator should run `jointgrid audit-trail verify`.",
            {"case": row["code"], "problems": problems},
        )


# --- the signing key ------------------------------------------------------------------------


def _cluster_data_dirs() -> list[Path]:

    dirs = [ROOT / "var" / "pg"]
    if os.environ.get("PGDATA"):
        dirs.append(Path(os.environ["PGDATA"]))
    return [d.resolve() for d in dirs]


def load_key(path: Path, *, create: bool = True) -> Ed25519PrivateKey:
    """The installation's signing key from ``path`` (PEM, PKCS#8), made on first use.

    Refused when the file is inside the cluster's data folder, not owned by this user, or
    readable by group or others."""
    path = path.expanduser().resolve()
    for d in _cluster_data_dirs():
        if path.is_relative_to(d):
            raise InvalidInput(
                f"the checkpoint key {path} is inside the database's folder {d}; set "
                "JOINTGRID_AUDIT_KEY_FILE to a path the database cannot read",
                {"key_file": str(path)},
            )
    if not path.exists():
        if not create:
            raise InvalidInput(f"no checkpoint key at {path}", {"key_file": str(path)})
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return load_key(path, create=False)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        log.info("made the checkpoint signing key %s (key id %s)", path, key_id_of(key))
        return key
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InvalidInput(
            f"the checkpoint key {path} must be owned by this user and mode 0600 "
            f"(it is {stat.filemode(st.st_mode)}); fix it with `chmod 600 {path}`",
            {"key_file": str(path)},
        )
    loaded = load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, Ed25519PrivateKey):
        raise InvalidInput(f"{path} is not an ed25519 key", {"key_file": str(path)})
    return loaded


def key_id_of(key: Ed25519PrivateKey) -> str:
    return cp.key_id(cp.raw_public(key.public_key()))


# --- making a checkpoint --------------------------------------------------------------------

OnCheckpoint = Callable[[dict[str, Any], Path | None], None]
"""Called after a checkpoint is stored and written: its file document without the heads
(statement, signature, key id) and the file's path (with the heads), or None without a
folder. The hook for delivering checkpoints as an event (push); it runs after the commit."""

_hooks: list[OnCheckpoint] = []


def on_checkpoint(hook: OnCheckpoint) -> None:
    """Register ``hook(file_document, path)``, called after every checkpoint is written."""
    _hooks.append(hook)


@dataclass
class Made:
    seq: int
    key_id: str
    made_at: datetime
    cases: int
    events: int
    root: str
    changed_heads: int
    path: Path | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path | datetime) else v) for k, v in vars(self).items()}


def file_name(key_id: str, seq: int) -> str:
    return f"checkpoint-{key_id}-{seq:06d}.json"


def write_file(
    folder: Path, statement: dict[str, Any], signature: bytes, heads: Iterable[merkle.Head]
) -> Path:
    """Write a checkpoint file (``gis.checkpoint.to_file``), the heads streamed one by one,
    atomically: a temporary name, then a rename."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / file_name(statement["key_id"], int(statement["seq"]))
    text = json.dumps(cp.to_file(statement, signature, []), separators=(",", ":"))
    assert text.endswith('"heads":[]}')  # heads come last, so they can be streamed
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text[:-2])
        for i, (c, s, h) in enumerate(heads):
            f.write(("," if i else "") + json.dumps([c, s, h.hex()]))
        f.write("]}")
    tmp.replace(path)
    return path


def make_checkpoint(
    conn: Conn,
    key: Ed25519PrivateKey,
    *,
    folder: Path | None,
    side: str | None = None,
    now: datetime | None = None,
) -> Made | None:
    """Sign a checkpoint of the whole trail, store it and write its file; None when another
    maker holds the lock. Reads only the trail (works as the least-privileged server role)."""
    t0 = time.perf_counter()
    pub = cp.raw_public(key.public_key())
    kid = cp.key_id(pub)
    fresh = audit.idle(conn)
    with conn.transaction():
        if fresh:
            audit.snapshot(conn, read_only=False)
        if not audit.lock_checkpoints(conn):
            return None
        series = audit.checkpoints(conn, origin=LOCAL, key_id=kid)
        prev = series[-1] if series else None
        builder = merkle.RootBuilder()
        changed: list[merkle.Head] = []
        for case_id, seq, head, diff in audit.current_heads(
            conn, previous=[s["id"] for s in series]
        ):
            builder.add(merkle.leaf_hash(case_id, seq, bytes(head)))
            if diff:
                changed.append((case_id, seq, bytes(head)))
        n = audit.counts(conn)
        made_at = now or datetime.now(UTC)
        statement = cp.make_statement(
            key_id_=kid,
            side=side,
            seq=(prev["seq"] + 1) if prev else 1,
            made_at=made_at,
            cases=builder.size,
            events=n.get("events", 0),
            root=builder.root(),
            prev_root=bytes(prev["root"]) if prev else None,
        )
        signature = cp.sign(statement, key)
        audit.store_checkpoint(
            conn,
            origin=LOCAL,
            key_id=kid,
            public_key=pub,
            seq=statement["seq"],
            made_at=made_at,
            cases=builder.size,
            events=statement["events"],
            root=builder.root(),
            statement=cp.statement_bytes(statement).decode(),
            signature=signature,
            heads=changed,
        )
        doc = cp.to_file(statement, signature, [])  # for the hooks: the heads are in the file
        # Pushed like a case event (audit.checkpoint), in the checkpoint's own transaction.
        outbox.on_checkpoint(conn, doc)
    path = write_file(folder, statement, signature, changed) if folder is not None else None
    for hook in _hooks:
        try:
            hook(doc, path)
        except Exception:  # a hook's failure must not undo a signed, stored checkpoint
            log.warning("a checkpoint hook failed", exc_info=True)
    return Made(
        seq=statement["seq"],
        key_id=kid,
        made_at=made_at,
        cases=builder.size,
        events=statement["events"],
        root=statement["root"],
        changed_heads=len(changed),
        path=path,
        seconds=round(time.perf_counter() - t0, 3),
    )


# --- export and import ----------------------------------------------------------------------


def export_checkpoints(conn: Conn, *, since: datetime | None, folder: Path) -> list[Path]:
    """Write this installation's checkpoints made at or after ``since`` as signed files."""
    out = []
    for c in audit.checkpoints(conn, origin=LOCAL):
        if since is not None and c["made_at"] < since:
            continue
        statement = json.loads(c["statement"])
        out.append(
            write_file(folder, statement, bytes(c["signature"]), audit.heads_of(conn, c["id"]))
        )
    return out


def import_checkpoints(
    conn: Conn, paths: Sequence[Path], *, side: str, public_pem: bytes
) -> list[dict[str, Any]]:
    """Store side ``side``'s checkpoint files after checking each signature against its
    public key, in the order of their seq; ``CheckpointRefused`` names a forged file or one
    signed by another key, and nothing is stored then. A file already held is skipped."""
    if side == LOCAL:
        raise InvalidInput("name the side the checkpoints come from (its district code)", {})
    public = cp.load_public(public_pem)
    checked = []
    for p in paths:
        try:
            doc = json.loads(Path(p).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise cp.CheckpointRefused(f"{p}: cannot read it: {exc}", {"file": str(p)}) from exc
        checked.append((p, cp.check_file(doc, public, name=str(p))))
    checked.sort(key=lambda pc: pc[1].seq)
    done = []
    with conn.transaction():
        held = {
            c["seq"]: c
            for c in audit.checkpoints(conn, origin=side, key_id=cp.key_id(cp.raw_public(public)))
        }
        for p, c in checked:
            old = held.get(c.seq)
            if old is not None:
                if bytes(old["signature"]) != c.signature:
                    raise cp.CheckpointRefused(
                        f"{p}: side {side} already has a different checkpoint {c.seq} here",
                        {"file": str(p), "seq": c.seq},
                    )
                done.append({"file": str(p), "seq": c.seq, "stored": False})
                continue
            before = held.get(c.seq - 1)
            want_prev = None if before is None else bytes(before["root"]).hex()
            if c.seq > 1 and before is None:
                raise cp.CheckpointRefused(
                    f"{p}: checkpoint {c.seq} needs checkpoint {c.seq - 1} of side {side} first",
                    {"file": str(p), "seq": c.seq, "missing": c.seq - 1},
                )
            if c.statement.get("prev_root") != want_prev:
                raise cp.CheckpointRefused(
                    f"{p}: checkpoint {c.seq} does not follow checkpoint {c.seq - 1} held here",
                    {"file": str(p), "seq": c.seq},
                )
            audit.store_checkpoint(
                conn,
                origin=side,
                key_id=c.key_id,
                public_key=c.public_raw,
                seq=c.seq,
                made_at=datetime.fromisoformat(c.statement["made_at"]),
                cases=int(c.statement["cases"]),
                events=int(c.statement["events"]),
                root=c.root,
                statement=cp.statement_bytes(c.statement).decode(),
                signature=c.signature,
                heads=c.heads,
            )
            held[c.seq] = {"seq": c.seq, "root": c.root, "signature": c.signature}
            done.append({"file": str(p), "seq": c.seq, "stored": True})
    return done


# --- verify ---------------------------------------------------------------------------------


@dataclass
class Report:
    """What ``verify`` found. ``findings``: one per case and kind (chain, state, checkpoint)."""

    cases: int = 0
    events: int = 0
    findings: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    checkpoint_problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    covered: int = 0
    checks: tuple[str, ...] = CHECKS
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not self.findings and not self.checkpoint_problems

    def cases_named(self) -> set[str]:
        return {f["case"] for f in self.findings}

    def as_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "checks": list(self.checks),
            "cases": self.cases,
            "events": self.events,
            "findings": self.findings,
            "checkpoint": self.checkpoint,
            "checkpoint_problems": self.checkpoint_problems,
            "notes": self.notes,
            "cases_covered_by_checkpoint": self.covered,
            "cannot_prove": list(CANNOT_PROVE),
            "seconds": self.seconds,
        }


def verify(
    conn: Conn,
    *,
    ladder: Ladder,
    against: str = LOCAL,
    public_pem: bytes | None = None,
    checks: Iterable[str] = CHECKS,
    folder: Path | None = None,
) -> Report:
    """Check the whole trail in one snapshot: the hash chain, every case against its trail,
    and every case the latest good checkpoint of ``against`` covers against it. With
    ``public_pem``, only checkpoints signed by that key count. ``checks`` picks the checks.
    ``folder``: this installation's checkpoint files, each of which must be in the database."""
    todo = tuple(c for c in CHECKS if c in set(checks))
    rep = Report(checks=todo)
    cpu0 = time.process_time()
    fresh = audit.idle(conn)
    with conn.transaction():
        if fresh:
            audit.snapshot(conn)
        if "chain" in todo:
            t = time.perf_counter()
            seen = set()
            for b in incidents.verify_chain(conn)["breaks"]:
                if b["code"] not in seen:
                    seen.add(b["code"])
                    rep.findings.append(
                        {
                            "case": b["code"],
                            "kind": "chain",
                            "problem": f"event {b['seq']} {b['problem']}",
                        }
                    )
            rep.seconds["chain"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        for case, case_id, events in audit.case_trails(conn):
            rep.cases += 1
            rep.events += len(events)
            if "state" not in todo:
                continue
            if case is None:
                rep.findings.append(
                    {
                        "case": case_id,
                        "kind": "state",
                        "problem": f"the case row is gone; {len(events)} event(s) remain",
                    }
                )
                continue
            problems = check(case, events, ladder=ladder)
            if problems:
                rep.findings.append(
                    {"case": case["code"], "kind": "state", "problem": "; ".join(problems)}
                )
        rep.seconds["state"] = round(time.perf_counter() - t, 3)
        if "checkpoint" in todo:
            t = time.perf_counter()
            _against_checkpoint(conn, rep, against=against, public_pem=public_pem, folder=folder)
            rep.seconds["checkpoint"] = round(time.perf_counter() - t, 3)
    rep.seconds["python_cpu"] = round(time.process_time() - cpu0, 3)
    order = {k: i for i, k in enumerate(CHECKS)}
    rep.findings.sort(key=lambda f: (f["case"], order[f["kind"]]))
    return rep


def _good_series(conn: Conn, rep: Report, *, origin: str, pin: str | None) -> list[dict[str, Any]]:
    """The longest run of checkpoints 1..n of one signer of ``origin`` whose signatures hold
    and whose ``prev_root`` links hold; every other checkpoint is a problem reported."""
    rows = audit.checkpoints(conn, origin=origin)
    if not rows:
        return []
    keys = sorted({r["key_id"] for r in rows})
    if pin is not None:
        for k in keys:
            if k != pin:
                rep.checkpoint_problems.append(
                    f"checkpoints of {origin} signed by key {k}, not by the expected key {pin}: not used"
                )
        keys = [k for k in keys if k == pin]
    best: list[dict[str, Any]] = []
    for k in keys:
        run: list[dict[str, Any]] = []
        for r in (r for r in rows if r["key_id"] == k):
            label = f"checkpoint {origin}#{r['seq']} (key {k})"
            try:
                statement = json.loads(r["statement"])
            except ValueError:
                rep.checkpoint_problems.append(f"{label}: its statement is not JSON: not used")
                break
            ok = cp.verify_signature(statement, bytes(r["signature"]), bytes(r["public_key"]))
            same = (
                statement.get("root") == bytes(r["root"]).hex()
                and statement.get("seq") == r["seq"]
                and statement.get("key_id") == k == cp.key_id(bytes(r["public_key"]))
            )
            if not ok or not same:
                rep.checkpoint_problems.append(
                    f"{label}: its signature does not hold (forged or altered): it and any later one are not used"
                )
                break
            want_prev = bytes(run[-1]["root"]).hex() if run else None
            if r["seq"] != len(run) + 1 or statement.get("prev_root") != want_prev:
                rep.checkpoint_problems.append(
                    f"{label}: does not follow checkpoint #{len(run)} (one is missing or replaced): "
                    "it and any later one are not used"
                )
                break
            run.append({**r, "statement_json": statement})
        if run and (not best or run[-1]["made_at"] > best[-1]["made_at"]):
            best = run
    return best


def read_header(path: Path) -> dict[str, Any]:
    """A checkpoint file's statement, signature and key id, without reading its heads (the
    file is written heads last: ``write_file``)."""
    with path.open("r", encoding="utf-8") as f:
        text = f.read(65_536)
    cut = text.find(',"heads":[')
    return dict(json.loads(text[:cut] + "}" if cut >= 0 else text))


def _against_files(conn: Conn, rep: Report, folder: Path, pin: str | None) -> int:
    """Each checkpoint file of this installation must be in the database as it was signed;
    return how many files there are."""
    held = {
        (r["key_id"], r["seq"]): (bytes(r["signature"]), bytes(r["public_key"]))
        for r in audit.checkpoints(conn, origin=LOCAL)
    }
    n = 0
    for path in sorted(folder.glob("checkpoint-*.json")) if folder.is_dir() else []:
        try:
            doc = read_header(path)
            st, sig = doc["statement"], base64.b64decode(doc["signature"])
        except (OSError, ValueError, KeyError, TypeError):
            rep.checkpoint_problems.append(f"checkpoint file {path.name}: unreadable")
            continue
        if pin is not None and st.get("key_id") != pin:
            continue
        n += 1
        row = held.get((st.get("key_id"), st.get("seq")))
        if row is None or row[0] != sig:
            rep.checkpoint_problems.append(
                f"checkpoint file {path.name} (#{st.get('seq')}) is not in the database as "
                "signed: checkpoints were removed or replaced there"
            )
        elif not cp.verify_signature(st, sig, row[1]):
            rep.checkpoint_problems.append(
                f"checkpoint file {path.name}: its signature does not hold"
            )
    return n


def _against_checkpoint(
    conn: Conn, rep: Report, *, against: str, public_pem: bytes | None, folder: Path | None
) -> None:
    pin = None
    if public_pem is not None:
        pin = cp.key_id(cp.raw_public(cp.load_public(public_pem)))
    elif against == LOCAL:
        try:
            pin = key_id_of(load_key(settings.AuditSettings().key_file, create=False))
        except InvalidInput:
            pin = None  # no key here (a check run elsewhere): any key in the database counts
    files = _against_files(conn, rep, folder, pin) if against == LOCAL and folder else 0
    series = _good_series(conn, rep, origin=against, pin=pin)
    if not series:
        msg = f"no usable checkpoint of {against}: nothing here is proven against one"
        if files or rep.checkpoint_problems or against != LOCAL:
            rep.checkpoint_problems.append(msg)
        else:  # a new installation: nothing signed yet, and nothing removed
            rep.notes.append(msg + " yet (`jointgrid audit-trail checkpoint` makes one)")
        return
    last = series[-1]
    st = last["statement_json"]
    rep.checkpoint = {
        "origin": against,
        "seq": last["seq"],
        "key_id": last["key_id"],
        "made_at": st["made_at"],
        "cases": st["cases"],
        "events": st["events"],
        "root": st["root"],
    }
    builder = merkle.RootBuilder()
    found: list[dict[str, Any]] = []
    for case_id, seq, head, now_hash, now_last, code in audit.heads_against_trail(
        conn, series=[s["id"] for s in series]
    ):
        head = bytes(head)
        builder.add(merkle.leaf_hash(case_id, seq, head))
        name = code or case_id
        label = f"checkpoint {against}#{last['seq']} holds it at event {seq}"
        if now_last is None:
            what = (
                "deleted: the case and its whole trail are gone"
                if code is None
                else "truncated: all its events are gone"
            )
        elif now_hash is None:
            what = f"truncated: its trail now ends at event {now_last}"
        elif bytes(now_hash) != head:
            what = "changed: its trail up to that event is not the one signed (an event edited, the chain recomputed)"
        else:
            rep.covered += 1
            continue
        found.append({"case": name, "kind": "checkpoint", "problem": f"{what}; {label}"})
    if builder.root().hex() != st["root"] or builder.size != st["cases"]:
        rep.checkpoint_problems.append(
            f"checkpoint {against}#{last['seq']}: the chain heads stored with it do not give its "
            "signed root (they were altered here): its per-case findings are not proven; check "
            "against the checkpoint files or the other side's copies"
        )
    rep.findings.extend(found)


# --- one case's inclusion proof ---------------------------------------------------------------


def prove(conn: Conn, case: str, *, against: str = LOCAL) -> dict[str, Any]:
    """The Merkle inclusion proof of one case in the latest good checkpoint of ``against``:
    enough, with the signer's public key, to check that case alone (``check_proof``)."""
    row = incidents.get(conn, case)
    rep = Report()
    fresh = audit.idle(conn)
    with conn.transaction():
        if fresh:
            audit.snapshot(conn)
        series = _good_series(conn, rep, origin=against, pin=None)
        if not series:
            raise InvalidInput(
                f"no usable checkpoint of {against}", {"problems": rep.checkpoint_problems}
            )
        last = series[-1]
        leaves: list[bytes] = []
        mine: tuple[int, int, bytes, Any] | None = None
        for case_id, seq, head, now_hash, _last, _code in audit.heads_against_trail(
            conn, series=[s["id"] for s in series]
        ):
            if case_id == row["id"]:
                mine = (len(leaves), seq, bytes(head), now_hash)
            leaves.append(merkle.leaf_hash(case_id, seq, bytes(head)))
    if mine is None:
        raise InvalidInput(
            f"checkpoint {against}#{last['seq']} does not cover case {row['code']} (newer)",
            {"case": row["code"]},
        )
    index, seq, head, now_hash = mine
    return {
        "case": row["code"],
        "case_id": row["id"],
        "seq": seq,
        "head": head.hex(),
        "index": index,
        "size": len(leaves),
        "path": [h.hex() for h in merkle.inclusion_proof(leaves, index)],
        "statement": last["statement_json"],
        "signature": base64.b64encode(bytes(last["signature"])).decode(),
        "trail_holds_it": now_hash is not None and bytes(now_hash) == head,
    }


def check_proof(doc: dict[str, Any], public_pem: bytes) -> list[str]:
    """What is wrong with an inclusion proof (empty: the signed root covers the case's head)."""
    public = cp.raw_public(cp.load_public(public_pem))
    st = doc["statement"]
    out = []
    if st.get("key_id") != cp.key_id(public):
        out.append(f"signed by key {st.get('key_id')}, not by the given key {cp.key_id(public)}")
    elif not cp.verify_signature(st, base64.b64decode(doc["signature"]), public):
        out.append("the checkpoint's signature does not hold (forged or altered)")
    leaf = merkle.leaf_hash(doc["case_id"], int(doc["seq"]), bytes.fromhex(doc["head"]))
    path = [bytes.fromhex(h) for h in doc["path"]]
    if int(doc["size"]) != int(st["cases"]) or not merkle.verify_inclusion(
        leaf, int(doc["index"]), int(doc["size"]), path, bytes.fromhex(st["root"])
    ):
        out.append("the case's head is not in the signed tree")
    return out
