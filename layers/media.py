"""Photos on cases: the ``media`` table (the files themselves are in ``layers.blobstore``).

Distances are computed here with ``geography`` (metres on the WGS84 spheroid), from the photo's
own EXIF position to the case's point.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from layers.blobstore import BlobStore
from layers.db import Conn, translate_errors

_COLUMNS = """
    m.id, m.incident_id::text AS incident_id, m.side, m.sha256, m.kind, m.added_by, m.added_at,
    m.content_type, m.bytes, m.width, m.height, ST_X(m.gps) AS gps_lon, ST_Y(m.gps) AS gps_lat,
    m.taken_at, m.distance_m, m.seconds_before_report, m.public_token, m.state, m.refusal
"""
STATES = ("pending", "ready", "refused")


def insert(
    conn: Conn,
    *,
    incident_id: str,
    sha256: str,
    kind: str,
    added_by: dict[str, Any],
    content_type: str,
    size: int,
    width: int,
    height: int,
    gps: tuple[float, float] | None,
    taken_at: datetime | None,
    public_token: str,
) -> dict[str, Any] | None:
    """Record a photo on a case; None when this photo (by hash) is on the case already.

    The distance (metres, geography) and the time before the report are computed against the
    stored case, in the same statement.
    """
    lon, lat = gps if gps is not None else (None, None)
    with translate_errors():
        return conn.execute(
            "WITH ins AS (INSERT INTO media (incident_id, side, sha256, kind, added_by,"
            " content_type, bytes, width, height, gps, taken_at, distance_m,"
            " seconds_before_report, public_token)"
            " SELECT i.id, i.side, %(sha)s, %(kind)s, %(by)s, %(ctype)s, %(size)s, %(w)s, %(h)s,"
            "  g.pt, %(taken)s::timestamptz,"
            "  ST_Distance(g.pt::geography, i.geom::geography),"
            "  extract(epoch FROM i.reported_at - %(taken)s::timestamptz), %(token)s"
            " FROM incidents i, LATERAL (SELECT CASE WHEN %(lon)s::float8 IS NULL THEN NULL"
            "  ELSE ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326) END AS pt) g"
            " WHERE i.id = %(id)s::uuid"
            " ON CONFLICT (incident_id, sha256) DO NOTHING RETURNING *)"
            f" SELECT {_COLUMNS} FROM ins m",
            {
                "id": incident_id,
                "sha": sha256,
                "kind": kind,
                "by": Jsonb(added_by),
                "ctype": content_type,
                "size": size,
                "w": width,
                "h": height,
                "lon": lon,
                "lat": lat,
                "taken": taken_at,
                "token": public_token,
            },
        ).fetchone()


def refused(conn: Conn, sha256s: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Of these photos, those already refused after their upload (on any case): hash -> why."""
    shas = list(dict.fromkeys(sha256s))
    if not shas:
        return {}
    with translate_errors():
        rows = conn.execute(
            "SELECT DISTINCT ON (sha256) sha256, refusal FROM media"
            " WHERE sha256 = ANY(%s) AND state = 'refused' ORDER BY sha256, id",
            (shas,),
        ).fetchall()
    return {r["sha256"]: r["refusal"] or {} for r in rows}


def pending(conn: Conn, *, older_than_s: float = 0, limit: int = 100) -> list[str]:
    """Photos (by hash) whose copies and full decode are still to be made, oldest first."""
    with translate_errors():
        rows = conn.execute(
            "SELECT sha256 FROM media WHERE state = 'pending'"
            " AND added_at <= now() - make_interval(secs => %s)"
            " GROUP BY sha256 ORDER BY min(added_at) LIMIT %s",
            (older_than_s, limit),
        ).fetchall()
    return [r["sha256"] for r in rows]


def pending_cases(conn: Conn, sha256: str) -> list[str]:
    """The cases on which this photo is still pending."""
    with translate_errors():
        rows = conn.execute(
            "SELECT incident_id::text AS id FROM media WHERE sha256 = %s AND state = 'pending'",
            (sha256,),
        ).fetchall()
    return [r["id"] for r in rows]


def mark_ready(conn: Conn, sha256: str) -> int:
    """Every pending record of this photo is ready (its copies are made); how many."""
    with translate_errors():
        cur = conn.execute(
            "UPDATE media SET state = 'ready' WHERE sha256 = %s AND state = 'pending'", (sha256,)
        )
    return cur.rowcount


def mark_refused(conn: Conn, sha256: str, refusal: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pending record of this photo is refused; the rows changed, with their case's
    side and status (for the audit events the caller appends in the same transaction)."""
    with translate_errors():
        return conn.execute(
            "UPDATE media m SET state = 'refused', refusal = %s FROM incidents i"
            " WHERE m.sha256 = %s AND m.state = 'pending' AND i.id = m.incident_id"
            " RETURNING m.id, m.incident_id::text AS incident_id, m.kind, i.side, i.status",
            (Jsonb(refusal), sha256),
        ).fetchall()


def hashes_on(conn: Conn, incident_id: str) -> set[str]:
    """The SHA-256 of every photo on a case."""
    with translate_errors():
        rows = conn.execute(
            "SELECT sha256 FROM media WHERE incident_id = %s::uuid", (incident_id,)
        ).fetchall()
    return {r["sha256"] for r in rows}


def on_case(conn: Conn, incident_id: str) -> list[dict[str, Any]]:
    """The photos of a case, in the order they were added."""
    with translate_errors():
        return conn.execute(
            f"SELECT {_COLUMNS} FROM media m WHERE m.incident_id = %s::uuid"
            " ORDER BY m.added_at, m.id",
            (incident_id,),
        ).fetchall()


def one(conn: Conn, incident_id: str, sha256: str) -> dict[str, Any] | None:
    """One photo of a case, by its hash."""
    with translate_errors():
        return conn.execute(
            f"SELECT {_COLUMNS} FROM media m WHERE m.incident_id = %s::uuid AND m.sha256 = %s",
            (incident_id, sha256),
        ).fetchone()


def by_token(conn: Conn, token: str) -> dict[str, Any] | None:
    """The photo behind a public capability token, with its case's category."""
    with translate_errors():
        return conn.execute(
            f"SELECT {_COLUMNS}, i.category FROM media m JOIN incidents i ON i.id = m.incident_id"
            " WHERE m.public_token = %s",
            (token,),
        ).fetchone()


def public_tokens(conn: Conn, incident_ids: Iterable[str]) -> dict[str, list[str]]:
    """Each case's photo tokens (oldest first), for the public links of feeds; a photo refused
    after its upload is never linked."""
    ids = list(dict.fromkeys(incident_ids))
    if not ids:
        return {}
    with translate_errors():
        rows = conn.execute(
            "SELECT incident_id::text AS id, array_agg(public_token ORDER BY added_at, id) AS t"
            " FROM media WHERE incident_id = ANY(%s::uuid[]) AND state <> 'refused'"
            " GROUP BY incident_id",
            (ids,),
        ).fetchall()
    return {r["id"]: list(r["t"]) for r in rows}


def _stored(conn: Conn) -> Iterator[str]:
    with translate_errors(), conn.cursor(name="media_hashes") as cur:
        cur.itersize = 5000
        cur.execute("SELECT DISTINCT sha256 FROM media ORDER BY sha256")
        for row in cur:
            yield row["sha256"]


def verify_files(conn: Conn, store: BlobStore) -> dict[str, Any]:
    """Check that every recorded photo's file is stored and still hashes to its SHA-256.

    Returns ``{"checked": n, "problems": [{"sha256", "problem"}]}``. Run inside a transaction
    (a named cursor needs one).
    """
    checked = 0
    problems: list[dict[str, str]] = []
    with conn.transaction():
        for sha in _stored(conn):
            checked += 1
            try:
                data = store.get(sha)
            except KeyError:
                problems.append({"sha256": sha, "problem": "the file is missing"})
                continue
            if hashlib.sha256(data).hexdigest() != sha:
                problems.append({"sha256": sha, "problem": "the file no longer has its hash"})
    return {"checked": checked, "problems": problems}
