"""Audits: the layers the coverage audit needs (projected to EPSG:4544, metres), and the
case audit trail's checks and signed checkpoints (gis/trail.py, gis/checkpoint.py).

The trail's reads are set-based and streamed through server-side cursors, ordered by case id,
so a check of 2,000,000 cases makes no round trip per case and holds one case at a time."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import shapely
from psycopg.rows import tuple_row
from psycopg.types.json import set_json_loads

from layers.db import Conn, translate_errors

METRIC_SRID = 4544  # CGCS2000 / 3-degree Gauss-Kruger CM 105E: covers the Anju-Tongnan border


def _read(conn: Conn, query: str) -> dict[str, Any]:
    with translate_errors():
        rows = conn.execute(query, {"srid": METRIC_SRID}, binary=True).fetchall()
    out: dict[str, Any] = {k: [r[k] for r in rows] for k in (rows[0] if rows else {})}
    if "wkb" in out:
        out["geoms"] = shapely.from_wkb(np.array(out.pop("wkb"), dtype=object))
    return out


def layers_for_audit(conn: Conn) -> dict[str, dict[str, Any]]:
    """Districts, villages, grids and police grids as parallel arrays in EPSG:4544."""
    return {
        "districts": _read(
            conn,
            "SELECT code, side, ST_AsBinary(ST_Transform(geom, %(srid)s)) AS wkb"
            " FROM areas WHERE level = 'district' ORDER BY code",
        ),
        "villages": _read(
            conn,
            "SELECT code, side, ST_AsBinary(ST_Transform(geom, %(srid)s)) AS wkb"
            " FROM areas WHERE level = 'village' ORDER BY code",
        ),
        "grids": _read(
            conn,
            "SELECT code, side, village_code, joint,"
            " ST_AsBinary(ST_Transform(geom, %(srid)s)) AS wkb FROM grids ORDER BY code",
        ),
        "police_grids": _read(
            conn,
            "SELECT code, side, ST_AsBinary(ST_Transform(geom, %(srid)s)) AS wkb"
            " FROM police_grids ORDER BY code",
        ),
    }


# --- the case audit trail -------------------------------------------------------------------

CHECKPOINT_LOCK = 7_311_014  # advisory lock key: one checkpoint maker at a time
_ITERSIZE = 20_000

CASE_COLUMNS = ("id", "code", "status", "sides", "due_at", "escalation_level", "verified_sides",
                "merged_into")  # fmt: skip
EVENT_COLUMNS = ("seq", "action", "from_status", "to_status", "actor_side", "note", "payload", "at")


def idle(conn: Conn) -> bool:
    """Whether no transaction is open on ``conn`` (so the next one may take a snapshot)."""
    from psycopg.pq import TransactionStatus

    return conn.info.transaction_status == TransactionStatus.IDLE


def snapshot(conn: Conn, *, read_only: bool = True) -> None:
    """Make the transaction just begun one consistent snapshot (its first statement)."""
    with translate_errors():
        conn.execute(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ" + (" READ ONLY" if read_only else "")
        )


def _stream(conn: Conn, name: str, query: str, params: Any = None) -> Iterator[tuple[Any, ...]]:
    with translate_errors(), conn.cursor(name, row_factory=tuple_row) as cur:
        cur.itersize = _ITERSIZE
        set_json_loads(orjson.loads, cur)  # the same values, a fraction of the json module's time
        cur.execute(query, params)
        yield from cur


def case_trails(conn: Conn) -> Iterator[tuple[dict[str, Any] | None, str, list[dict[str, Any]]]]:
    """Every case with its events, oldest first, ordered by case id: ``(case or None, case
    id, events)``. A case without events comes with ``[]``; events whose case row is gone with
    ``None``. Two index-ordered scans (cases by id, events by case and seq) merged here: no
    sort of millions of rows in the database, one case in memory at a time."""
    cases = _stream(
        conn,
        "jg_trail_cases",
        "SELECT i.id, i.id::text, i.code, i.status, i.sides, i.due_at, i.escalation_level,"
        " i.verified_sides, i.merged_into::text FROM incidents i ORDER BY i.id",
    )
    events = _stream(
        conn,
        "jg_trail_events",
        "SELECT e.incident_id, e.seq, e.action, e.from_status, e.to_status, e.actor_side,"
        " e.note, e.payload, e.at FROM incident_events e ORDER BY e.incident_id, e.seq",
    )
    ev = next(events, None)
    for c in cases:
        key = c[0]
        while ev is not None and ev[0] < key:  # events of a case row that is gone
            orphan, trail = ev[0], []
            while ev is not None and ev[0] == orphan:
                trail.append(dict(zip(EVENT_COLUMNS, ev[1:], strict=True)))
                ev = next(events, None)
            yield None, str(orphan), trail
        trail = []
        while ev is not None and ev[0] == key:
            trail.append(dict(zip(EVENT_COLUMNS, ev[1:], strict=True)))
            ev = next(events, None)
        yield dict(zip(CASE_COLUMNS, c[1:], strict=True)), c[1], trail
    while ev is not None:
        orphan, trail = ev[0], []
        while ev is not None and ev[0] == orphan:
            trail.append(dict(zip(EVENT_COLUMNS, ev[1:], strict=True)))
            ev = next(events, None)
        yield None, str(orphan), trail


def counts(conn: Conn) -> dict[str, int]:
    """Cases with events, and events, in the trail now."""
    with translate_errors():
        row = conn.execute(
            "SELECT count(*) AS events, count(DISTINCT incident_id) AS cases FROM incident_events"
        ).fetchone()
    return {"cases": int(row["cases"]), "events": int(row["events"])} if row else {}


def checkpoints(conn: Conn, *, origin: str, key_id: str | None = None) -> list[dict[str, Any]]:
    """The checkpoints of ``origin`` ('local' or a side code), oldest first (no heads)."""
    with translate_errors():
        return conn.execute(
            "SELECT id, origin, key_id, public_key, seq, made_at, cases, events, root,"
            " statement, signature FROM audit_checkpoints WHERE origin = %(o)s"
            " AND (%(k)s::text IS NULL OR key_id = %(k)s) ORDER BY key_id, seq, id",
            {"o": origin, "k": key_id},
        ).fetchall()


def origins(conn: Conn) -> list[str]:
    """Every origin with checkpoints here."""
    with translate_errors():
        return [r["origin"] for r in conn.execute(
            "SELECT DISTINCT origin FROM audit_checkpoints ORDER BY origin")]  # fmt: skip


def current_heads(conn: Conn, *, previous: list[int]) -> Iterator[tuple[str, int, bytes, bool]]:
    """Every case's chain head now, by case id: ``(case id, seq, hash, changed)``, where
    ``changed`` says it differs from the heads of checkpoints ``previous`` (one signer's
    series up to its latest)."""
    return _stream(
        conn,
        "jg_current_heads",
        "WITH cur AS (SELECT DISTINCT ON (incident_id) incident_id, seq, hash"
        "  FROM incident_events ORDER BY incident_id DESC, seq DESC),"
        " prev AS (SELECT DISTINCT ON (incident_id) incident_id, seq, head"
        "  FROM audit_checkpoint_heads WHERE checkpoint_id = ANY (%(prev)s)"
        "  ORDER BY incident_id, checkpoint_id DESC)"
        " SELECT cur.incident_id::text, cur.seq, cur.hash,"
        "  (prev.seq IS DISTINCT FROM cur.seq OR prev.head IS DISTINCT FROM cur.hash)"
        " FROM cur LEFT JOIN prev USING (incident_id) ORDER BY cur.incident_id",
        {"prev": previous},
    )


def heads_against_trail(conn: Conn, *, series: list[int]) -> Iterator[tuple[Any, ...]]:
    """The heads of the checkpoint whose series (ids of checkpoints 1..n) is given, by case
    id, each with what the trail holds now: ``(case id, seq, head, hash now at that seq,
    last seq now, case code or None)``."""
    return _stream(
        conn,
        "jg_heads_against",
        "WITH k AS (SELECT DISTINCT ON (incident_id) incident_id, seq, head"
        "  FROM audit_checkpoint_heads WHERE checkpoint_id = ANY (%(ids)s)"
        "  ORDER BY incident_id, checkpoint_id DESC),"
        " cur AS (SELECT DISTINCT ON (incident_id) incident_id, seq"
        "  FROM incident_events ORDER BY incident_id DESC, seq DESC)"
        " SELECT k.incident_id::text, k.seq, k.head, e.hash, cur.seq, i.code"
        " FROM k LEFT JOIN incident_events e ON e.incident_id = k.incident_id AND e.seq = k.seq"
        " LEFT JOIN cur ON cur.incident_id = k.incident_id"
        " LEFT JOIN incidents i ON i.id = k.incident_id"
        " ORDER BY k.incident_id",
        {"ids": series},
    )


def heads_of(conn: Conn, checkpoint_id: int) -> list[tuple[str, int, bytes]]:
    """The heads stored with one checkpoint (its delta), by case id."""
    with translate_errors(), conn.cursor(row_factory=tuple_row) as cur:
        return cur.execute(
            "SELECT incident_id::text, seq, head FROM audit_checkpoint_heads"
            " WHERE checkpoint_id = %s ORDER BY incident_id",
            (checkpoint_id,),
        ).fetchall()


def codes_of(conn: Conn, ids: list[str]) -> dict[str, str]:
    """Case codes by id, for naming findings."""
    with translate_errors():
        return {
            r["id"]: r["code"]
            for r in conn.execute(
                "SELECT id::text AS id, code FROM incidents WHERE id = ANY (%s::uuid[])", (ids,)
            )
        }


def lock_checkpoints(conn: Conn) -> bool:
    """Take the checkpoint lock for this transaction; False when another maker holds it."""
    with translate_errors():
        row = conn.execute(
            "SELECT pg_try_advisory_xact_lock(%s) AS ok", (CHECKPOINT_LOCK,)
        ).fetchone()
    return bool(row and row["ok"])


def store_checkpoint(
    conn: Conn,
    *,
    origin: str,
    key_id: str,
    public_key: bytes,
    seq: int,
    made_at: datetime,
    cases: int,
    events: int,
    root: bytes,
    statement: str,
    signature: bytes,
    heads: Iterable[tuple[str, int, bytes]],
) -> int:
    """Append one checkpoint and its heads (COPY); return its id."""
    with translate_errors():
        row = conn.execute(
            "INSERT INTO audit_checkpoints (origin, key_id, public_key, seq, made_at, cases,"
            " events, root, statement, signature) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " RETURNING id",
            (origin, key_id, public_key, seq, made_at, cases, events, root, statement, signature),
        ).fetchone()
        cid = int(row["id"])  # type: ignore[index]
        with conn.cursor().copy(
            "COPY audit_checkpoint_heads (checkpoint_id, incident_id, seq, head) FROM STDIN"
        ) as cp:
            for c, s, h in heads:
                cp.write_row((cid, c, s, h))
    return cid
