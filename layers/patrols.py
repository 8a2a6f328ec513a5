"""Patrol sessions (tracks) and border patrol coverage: the layers ``patrol_tracks`` and
``patrol_coverage``, explicit start and stop, and the coverage table.

Sessions and the cells' "last patrolled" are kept by ``patrol_apply`` (migration 0022), from the
backlog that each store of fixes adds to (``apply_backlog``, migration 0030: the server's patrol
worker, after the answer), and by an explicit start or stop in its own transaction. Patrolled
minutes are computed from the stored fixes on demand (``patrol_coverage_minutes``), so a late
fix counts the moment it is stored.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from gis.workflow import OPEN_STATUSES
from layers.db import Conn, translate_errors
from layers.registry import LayerSpec, register

TRACKS = register(
    LayerSpec(
        id="patrol_tracks",
        title="Patrol tracks",
        description="Each device's patrol sessions, tracks simplified for the map. Needs a key.",
        table="patrol_tracks",
        geometry_column="track",
        geometry_type="Geometry",
        id_column="id",
        public=(
            "id",
            "team",
            "side",
            "started_at",
            "ended_at",
            "duration_s",
            "length_m",
            "border_m",
            "fixes",
            "explicit",
        ),
        temporal="ended_at",
        style={"color": "#6a3d9a", "weight": 3, "opacity": 0.8},
        keyed=True,  # where the patrols went: never anonymous
    )
)

COVERAGE = register(
    LayerSpec(
        id="patrol_coverage",
        title="Border patrol coverage",
        description="Cells of the border zone (about 500 m along the line on each side), with "
        "when each was last patrolled, by which team and side.",
        table="patrol_coverage",
        geometry_column="geom",
        geometry_type="MultiPolygon",
        id_column="id",
        public=(
            "id",
            "side",
            "grid",
            "seq",
            "area_m2",
            "last_patrolled_at",
            "last_team",
            "last_side",
            "days_since_patrol",
        ),
        temporal="last_patrolled_at",
        style={"color": "#1a9850", "weight": 1, "fillOpacity": 0.35},
    )
)


def derive_cells(conn: Conn, *, cell_m: float | None = None) -> int:
    """Cut the border zone into cells again (``cell_m`` metres along the line); return how many."""
    with translate_errors(), conn.transaction():
        row = conn.execute("SELECT derive_coverage_cells(%s) AS n", (cell_m,)).fetchone()
    return int(row["n"])  # type: ignore[index]


def ensure_cells(conn: Conn) -> None:
    """Derive the cells if the border changed since they were (or they never were)."""
    with translate_errors(), conn.transaction():
        conn.execute("SELECT coverage_cells_ready()")


def apply_backlog(conn: Conn, *, gap_s: float, devices: int = 50) -> dict[str, int]:
    """Bring the sessions and the cells up to date with the fixes stored since (the backlog),
    for up to ``devices`` devices, in the caller's transaction; a device another transaction
    is applying is left for the next call. Returns ``{"devices", "rows"}`` applied."""
    with translate_errors():
        row = conn.execute(
            "SELECT applied_devices, applied_rows FROM patrol_apply_backlog(%s, %s)",
            (gap_s, devices),
        ).fetchone()
    assert row is not None
    return {"devices": int(row["applied_devices"]), "rows": int(row["applied_rows"])}


def apply_all(conn: Conn, *, gap_s: float, devices: int = 50) -> dict[str, int]:
    """``apply_backlog`` until a call applies nothing (the backlog is empty, or holds only
    devices being applied elsewhere or failing), each call its own transaction (``conn`` in
    autocommit) or all in the caller's; the totals."""
    total = {"devices": 0, "rows": 0}
    while True:
        got = apply_backlog(conn, gap_s=gap_s, devices=devices)
        if not got["devices"]:
            return total
        total = {k: total[k] + got[k] for k in total}


def backlog(conn: Conn) -> dict[str, Any]:
    """The backlog's size: rows, devices, and the age in seconds of the oldest row (0: none)."""
    with translate_errors():
        row = conn.execute(
            "SELECT count(*) AS rows, count(DISTINCT device) AS devices,"
            " COALESCE(extract(epoch FROM now() - min(queued_at)), 0)::float8 AS oldest_s"
            " FROM patrol_backlog"
        ).fetchone()
    assert row is not None
    return dict(row)


def mark(conn: Conn, *, device: dict[str, Any], kind: str, at: datetime, gap_s: float) -> None:
    """An explicit start or stop of the device's patrol at ``at``; sessions from then on are
    rebuilt (a start opens a new session at the next fix, a stop ends the current one and
    keeps later fixes off patrol until the next start). Caller's transaction."""
    with translate_errors():
        conn.execute(
            "INSERT INTO patrol_marks (device, side, at, kind) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (device, at) DO UPDATE SET kind = EXCLUDED.kind",
            (device["id"], device["side"], at, kind),
        )
        conn.execute("SELECT patrol_apply(%s, %s, %s)", (device["id"], at, gap_s))


def sessions(
    conn: Conn, *, device: str | None = None, team: str | None = None, since: datetime | None = None
) -> list[dict[str, Any]]:
    """Patrol sessions, oldest first: times, fixes, length and border length (metres), and the
    track as GeoJSON (unsimplified)."""
    with translate_errors():
        return conn.execute(
            "SELECT id, device, team, side, member_id, started_at, ended_at, fixes, explicit,"
            " length_m, border_m, extract(epoch FROM ended_at - started_at) AS duration_s,"
            " ST_AsGeoJSON(track)::json AS track"
            " FROM patrol_sessions"
            " WHERE (%(device)s::text IS NULL OR device = %(device)s)"
            " AND (%(team)s::text IS NULL OR team = %(team)s)"
            " AND (%(since)s::timestamptz IS NULL OR ended_at >= %(since)s)"
            " ORDER BY started_at, id",
            {"device": device, "team": team, "since": since},
        ).fetchall()


def cells(conn: Conn, *, side: str | None = None) -> list[dict[str, Any]]:
    """The coverage cells (id, side, grid, seq, area, last patrolled, GeoJSON geometry)."""
    with translate_errors():
        return conn.execute(
            "SELECT id, side, grid, seq, area_m2, last_patrolled_at, last_team, last_side,"
            " ST_AsGeoJSON(geom)::json AS geom FROM coverage_cells"
            " WHERE %(side)s::text IS NULL OR side = %(side)s ORDER BY side, seq",
            {"side": side},
        ).fetchall()


def minutes(conn: Conn, *, since: datetime, until: datetime, gap_s: float) -> list[dict[str, Any]]:
    """Patrolled minutes per cell, Asia/Shanghai day and team within [since, until), counted as
    time along track segments inside the cell."""
    with translate_errors():
        return conn.execute(
            "SELECT cell, cell_side, day, team, team_side, minutes"
            " FROM patrol_coverage_minutes(%s, %s, %s) ORDER BY cell, day, team",
            (since, until, gap_s),
        ).fetchall()


def coverage_table(
    conn: Conn, *, since: datetime, until: datetime, gap_s: float, gap_days: float, now: datetime
) -> list[dict[str, Any]]:
    """One row per cell: its side and grid, minutes patrolled in [since, until) in total and per
    side of the patrolling teams, when it was last patrolled (by whom), and whether it is a gap
    (no visit within ``gap_days`` of ``now``)."""
    with translate_errors():
        return conn.execute(
            """
            WITH m AS (SELECT * FROM patrol_coverage_minutes(%(since)s, %(until)s, %(gap)s))
            SELECT c.id, c.side, c.grid, c.seq,
                   COALESCE((SELECT sum(minutes) FROM m WHERE m.cell = c.id), 0) AS minutes,
                   COALESCE((SELECT jsonb_object_agg(team_side, mm) FROM (
                       SELECT team_side, round(sum(minutes)::numeric, 1) AS mm FROM m
                       WHERE m.cell = c.id GROUP BY team_side) x), '{}') AS minutes_by_side,
                   c.last_patrolled_at, c.last_team, c.last_side,
                   (c.last_patrolled_at IS NULL
                    OR c.last_patrolled_at < %(now)s - make_interval(secs => %(gap_days)s * 86400))
                       AS gap
            FROM coverage_cells c ORDER BY c.side, c.seq
            """,
            {
                "since": since,
                "until": until,
                "gap": gap_s,
                "now": now,
                "gap_days": gap_days,
            },
        ).fetchall()


def shares(conn: Conn, *, since: datetime, until: datetime, gap_s: float) -> dict[str, Any]:
    """For the dashboard: per side, the share of its zone's cells (by area) patrolled in
    [since, until); per team, the cells and minutes it covered; per day, each side's share."""
    with translate_errors():
        m = conn.execute(
            "SELECT cell, cell_side, day, team, team_side, minutes"
            " FROM patrol_coverage_minutes(%s, %s, %s)",
            (since, until, gap_s),
        ).fetchall()
        area = {
            r["id"]: (r["side"], r["area_m2"])
            for r in conn.execute("SELECT id, side, area_m2 FROM coverage_cells")
        }
    total: dict[str, float] = {}
    for side, a in area.values():
        total[side] = total.get(side, 0.0) + a
    seen: dict[str, set[str]] = {}
    by_day: dict[tuple[Any, str], set[str]] = {}
    teams: dict[str, dict[str, Any]] = {}
    for r in m:
        if r["minutes"] <= 0:
            continue
        seen.setdefault(r["cell_side"], set()).add(r["cell"])
        by_day.setdefault((r["day"], r["cell_side"]), set()).add(r["cell"])
        t = teams.setdefault(r["team"], {"team": r["team"], "cells": set(), "minutes": 0.0})
        t["cells"].add(r["cell"])
        t["minutes"] += r["minutes"]

    def share(side: str, cells_: set[str]) -> float:
        return sum(area[c][1] for c in cells_) / total[side] if total.get(side) else 0.0

    return {
        "sides": {s: round(share(s, seen.get(s, set())), 4) for s in sorted(total)},
        "teams": [
            {"team": t["team"], "cells": len(t["cells"]), "minutes": round(t["minutes"], 1)}
            for t in sorted(teams.values(), key=lambda t: -t["minutes"])
        ],
        "trend": [
            {"day": d.isoformat(), "side": s, "share": round(share(s, c), 4)}
            for (d, s), c in sorted(by_day.items())
        ],
    }


def team_today(conn: Conn, *, team: str, day_start: datetime) -> dict[str, Any]:
    """A team's popup facts: its members with their last fix, the team's distance patrolled
    since ``day_start`` (metres), and its open cases."""
    with translate_errors():
        members = conn.execute(
            "SELECT m.id, m.name, m.role, m.side, l.time AS last_fix"
            " FROM members m LEFT JOIN device_latest l ON l.member_id = m.id"
            " WHERE m.team = %s ORDER BY l.time DESC NULLS LAST, m.name",
            (team,),
        ).fetchall()
        dist = conn.execute(
            "SELECT COALESCE(sum(length_m), 0) AS m FROM patrol_sessions"
            " WHERE team = %s AND ended_at >= %s",
            (team, day_start),
        ).fetchone()
        cases = conn.execute(
            "SELECT count(*) AS n FROM incidents WHERE status = ANY(%s)"
            " AND teams @> jsonb_build_array(jsonb_build_object('code', %s::text))",
            (sorted(OPEN_STATUSES), team),
        ).fetchone()
    return {
        "members": members,
        "distance_m": float(dist["m"]) if dist else 0.0,
        "open_cases": int(cases["n"]) if cases else 0,
    }


def week_start(now: datetime) -> datetime:
    """Monday 00:00 of ``now``'s week, in ``now``'s zone."""
    d = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return d - timedelta(days=d.weekday())
