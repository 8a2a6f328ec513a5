"""Positions of team members' devices: the time-partitioned ``positions`` table, the latest fix
of each device and team, and the team positions layer (``team_positions``).

Every write here runs in the caller's transaction: the fixes, the latest fix of the device and
of its team, and the device's row of the patrol backlog commit together; the patrol worker
brings the sessions and the cells up to date from that backlog after the answer
(``layers.patrols.apply_backlog``, migration 0030).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import numpy as np
from psycopg import errors as pgerr

from gis.fixes import Fix, FixBatch
from layers.db import Conn, translate_errors
from layers.registry import LayerSpec, register

SPEC = register(
    LayerSpec(
        id="team_positions",
        title="Team positions (latest)",
        description="The latest good position of each joint team, at team level only. Needs a key.",
        table="team_positions",
        geometry_column="geom",
        geometry_type="Point",
        id_column="team",
        public=("team", "name", "side", "time"),
        temporal="time",
        style={"color": "#08519c", "radius": 7, "fillOpacity": 0.9},
        keyed=True,  # live positions of police and patrol teams
    )
)

_BOUNDS: dict[str, Any] = {}
_BOUNDS_LOCK = threading.Lock()
BOUNDS_TTL_S = 300.0


def maintain(conn: Conn, *, retention_days: int, days_back: int | None = None) -> dict[str, Any]:
    """Make the day partitions from ``days_back`` (default: the retention) days ago to two days
    ahead, and drop those wholly older than the retention; return what was created and dropped."""
    with translate_errors(), conn.transaction():
        row = conn.execute(
            "SELECT positions_maintain(%s, %s) AS r", (retention_days, days_back)
        ).fetchone()
    return dict(row["r"])  # type: ignore[index]


def partitions(conn: Conn) -> list[dict[str, Any]]:
    """The partitions of ``positions``, oldest first, with their bounds and row counts."""
    with translate_errors():
        return conn.execute(
            "SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound,"
            " (SELECT count(*) FROM positions p WHERE p.tableoid = c.oid) AS rows"
            " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'positions'::regclass ORDER BY c.relname"
        ).fetchall()


def service_box(conn: Conn) -> tuple[float, float, float, float] | None:
    """The lon/lat box of the loaded districts (cached a few minutes), or None if none."""
    with _BOUNDS_LOCK:
        hit = _BOUNDS.get("box")
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
    with translate_errors():
        row = conn.execute(
            "SELECT ST_XMin(e) AS x0, ST_YMin(e) AS y0, ST_XMax(e) AS x1, ST_YMax(e) AS y1"
            " FROM (SELECT ST_Extent(geom) AS e FROM areas WHERE level = 'district') s"
        ).fetchone()
    box = None if row is None or row["x0"] is None else (row["x0"], row["y0"], row["x1"], row["y1"])
    with _BOUNDS_LOCK:
        _BOUNDS["box"] = (time.monotonic() + BOUNDS_TTL_S, box)
    return box


def previous_good(conn: Conn, *, device: str, before: datetime) -> Fix | None:
    """The device's last good (unflagged) fix before ``before``: the latest fix when it is
    older (the live case, one key look-up), else the stored fix just before."""
    with translate_errors():
        row = conn.execute(
            "SELECT time, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM device_latest"
            " WHERE device = %s AND time < %s",
            (device, before),
        ).fetchone()
        if row is None:
            row = conn.execute(
                "SELECT time, ST_X(geom) AS lon, ST_Y(geom) AS lat FROM positions"
                " WHERE device = %s AND time < %s AND flags = '{}' ORDER BY time DESC LIMIT 1",
                (device, before),
            ).fetchone()
    return None if row is None else Fix(lon=row["lon"], lat=row["lat"], time=row["time"])


STORE = (
    "SELECT positions_store(%s, %s, %s, %s, %s, %s::timestamptz[], %s::float8[], %s::float8[],"
    " %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::boolean[],"
    " %s::boolean[]) AS n"
)


class MissingPartition(Exception):
    """A fix's day has no partition yet: run ``maintain`` and the transaction again."""


def _floats(values: Any) -> str:
    """A float8[] literal (NaN and None: NULL). Sent as one text parameter: psycopg's dump of
    a Python list, element by element, cost more than the INSERT it fed."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    return "{" + ",".join("NULL" if v is None or v != v else repr(float(v)) for v in values) + "}"


def _bools(values: Any) -> str:
    return "{" + ",".join("t" if v else "f" for v in values) + "}"


def _times(values: list[datetime]) -> str:
    return "{" + ",".join(t.isoformat() for t in values) + "}"


def store_batch(
    conn: Conn,
    *,
    device: dict[str, Any],
    batch: FixBatch,
    source: str,
    retention_days: int,
) -> dict[str, int]:
    """Store a device's fixes (checked and flagged: ``gis.fixes.read_batch``, ``flag_batch``)
    once each per (device, time); move the device's and team's latest fix; queue the device's
    sessions for the patrol worker (``positions_store``). One statement: in autocommit it
    commits before this returns. Returns ``{"stored", "duplicates"}``."""
    none = "{" + ",".join(["NULL"] * len(batch)) + "}"
    columns = (
        _times(batch.time),
        _floats(batch.lon),
        _floats(batch.lat),
        _floats(batch.accuracy_m),
        _floats(batch.speed_mps),
        none,
        none,
        none,
        _bools(batch.flag_accuracy),
        _bools(batch.flag_speed),
    )
    return _store(conn, device, source, retention_days, len(batch), columns)


def store(
    conn: Conn,
    *,
    device: dict[str, Any],
    fixes: list[Fix],
    source: str,
    retention_days: int,
) -> dict[str, int]:
    """``store_batch`` for fixes one by one (the live protocols)."""
    columns = (
        _times([f.time for f in fixes]),
        _floats([f.lon for f in fixes]),
        _floats([f.lat for f in fixes]),
        _floats([f.accuracy_m for f in fixes]),
        _floats([f.speed_mps for f in fixes]),
        _floats([f.bearing for f in fixes]),
        _floats([f.altitude_m for f in fixes]),
        _floats([f.battery for f in fixes]),
        _bools(["accuracy" in f.flags for f in fixes]),
        _bools(["speed" in f.flags for f in fixes]),
    )
    return _store(conn, device, source, retention_days, len(fixes), columns)


def _store(
    conn: Conn,
    device: dict[str, Any],
    source: str,
    retention_days: int,
    count: int,
    columns: tuple[str, ...],
) -> dict[str, int]:
    """Send ``count`` fixes, as ``columns`` of array literals, to ``positions_store``."""
    if not count:
        return {"stored": 0, "duplicates": 0}
    head = (device["id"], device["side"], device["team"], device["member_id"], source)
    with translate_errors():
        try:
            row = conn.execute(STORE, (*head, *columns)).fetchone()
        except pgerr.CheckViolation as exc:
            # no partition for a fix's day (a server that ran past the partitions made ahead):
            # the caller makes them (``maintain``) and runs its transaction once more
            if "no partition" not in str(exc):
                raise
            raise MissingPartition(retention_days) from exc
    stored = int(row["n"]) if row else 0
    return {"stored": stored, "duplicates": count - stored}


def count_dropped(conn: Conn, *, device: dict[str, Any], reason: str, day: datetime) -> None:
    """Count a fix that was answered 200 but not stored (``/osmand``, ``/owntracks``)."""
    with translate_errors(), conn.transaction():
        conn.execute(
            "INSERT INTO positions_dropped AS d (device, side, day, reason, n)"
            " VALUES (%s, %s, %s, %s, 1)"
            " ON CONFLICT (device, day, reason) DO UPDATE SET n = d.n + 1",
            (device["id"], device["side"], day.date(), reason),
        )


def dropped(conn: Conn, *, device: str) -> dict[str, int]:
    with translate_errors():
        rows = conn.execute(
            "SELECT reason, sum(n)::bigint AS n FROM positions_dropped WHERE device = %s"
            " GROUP BY reason",
            (device,),
        ).fetchall()
    return {r["reason"]: int(r["n"]) for r in rows}


def track(conn: Conn, *, device: str, since: datetime | None = None) -> list[dict[str, Any]]:
    """The device's stored fixes in time order (lon, lat WGS84, time, flags)."""
    with translate_errors():
        return conn.execute(
            "SELECT time, ST_X(geom) AS lon, ST_Y(geom) AS lat, accuracy_m, speed_mps, flags, source"
            " FROM positions WHERE device = %s AND (%s::timestamptz IS NULL OR time >= %s)"
            " ORDER BY time",
            (device, since, since),
        ).fetchall()


def latest_by_team(conn: Conn, *, side: str | None = None) -> list[dict[str, Any]]:
    """The latest good fix of every team (team level: no device, no member), by team."""
    with translate_errors():
        return conn.execute(
            "SELECT team, side, name, time, ST_X(geom) AS lon, ST_Y(geom) AS lat"
            " FROM team_positions WHERE %(side)s::text IS NULL OR side = %(side)s ORDER BY team",
            {"side": side},
        ).fetchall()


def fresh_member_fixes(conn: Conn, *, max_age_s: float, now: datetime) -> list[dict[str, Any]]:
    """For routing by where a team is now: the latest good fix of each member on a live device,
    no older than ``max_age_s``, with the member's team and side (lon, lat WGS84). The caller
    keeps those of teams on duty (the roster) and picks, per team, the member nearest the point.
    """
    with translate_errors():
        return conn.execute(
            "SELECT DISTINCT ON (l.member_id) l.member_id, l.team, m.side, l.device, l.time,"
            " ST_X(l.geom) AS lon, ST_Y(l.geom) AS lat"
            " FROM device_latest l JOIN members m ON m.id = l.member_id"
            " JOIN devices d ON d.id = l.device AND d.revoked_at IS NULL"
            " WHERE l.time >= %(now)s - make_interval(secs => %(age)s) AND l.time <= %(now)s + interval '5 minutes'"
            " ORDER BY l.member_id, l.time DESC",
            {"now": now, "age": max_age_s},
        ).fetchall()
