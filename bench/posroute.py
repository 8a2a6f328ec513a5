"""Routing by position: what the fix look-up costs one report.

`jointgrid_facts()` as the report path calls it (one point, the teams only where the case can
be cross-boundary, a mechanism), for 300 points within 1.5 km of the line, one at a time,
prepared: with the members' fixes read as of now (``p_as_of``) and, as the anchor, the same
points without the fix look-up (``p_as_of`` NULL), interleaved point by point in the same run.
First on the seeded demo with no positions, then with positions loaded (10 devices per team,
a fix every 30 s for two days along the line), where it is also measured as of a day ago (the
re-route's case: the latest fixes are newer, so the stored fixes are read through the
positions' index). On a database of its own (`jointgrid_bench_posroute`), dropped at the end.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bench._common import create_db, drop_db, percentile, table, write_section

DB = "jointgrid_bench_posroute"
ROUNDS = 3
DEVICES_PER_TEAM = 10
DAYS = 2
EVERY_S = 30

# the line between the two sides: its longest piece
LINE = (
    "SELECT d.geom AS g FROM border b, ST_Dump(ST_LineMerge(b.geom)) d WHERE b.kind = 'line'"
    " ORDER BY ST_Length(d.geom) DESC LIMIT 1"
)

QUERY = (
    "SELECT f.facts FROM jointgrid_facts(ARRAY[%(x)s::float8], ARRAY[%(y)s::float8], 2000.0,"
    " ARRAY['joint_defense'], p_teams_if_cross => true,"
    " p_as_of => ARRAY[%(t)s::timestamptz], p_fix_max_age_s => 600.0) f"
)


def border_points(conn: Any, n: int, seed: int = 5) -> list[tuple[float, float]]:
    """``n`` points within 1.5 km of the line, on both sides (random along it and across it)."""
    rng = np.random.default_rng(seed)
    out = []
    for frac, metres, az in zip(
        rng.uniform(0.02, 0.98, n), rng.uniform(0, 1500, n), rng.choice([0, 90, 180, 270], n),
        strict=True,
    ):  # fmt: skip
        row = conn.execute(
            "SELECT ST_X(q) AS x, ST_Y(q) AS y FROM (SELECT ST_Project("
            " ST_LineInterpolatePoint(l.g, %s)::geography, %s, radians(%s))::geometry AS q"
            f" FROM ({LINE}) l) s",
            (float(frac), float(metres), float(az)),
        ).fetchone()
        out.append((row["x"], row["y"]))
    return out


def load_positions(conn: Any, now: datetime) -> int:
    """Devices for every team, each walking along the line (200-900 m off it) for two days."""
    from layers import devices

    teams = [r["code"] for r in conn.execute("SELECT code FROM teams ORDER BY code")]
    ids = []
    for team in teams:
        for i in range(DEVICES_PER_TEAM):
            _key, rec = devices.add_device(conn, team=team, member_name=f"bench {team} {i}")
            ids.append(rec["id"])
    start = now - timedelta(days=DAYS)
    n = int(DAYS * 86400 / EVERY_S)
    conn.execute(
        "INSERT INTO positions (device, time, side, team, member_id, geom, accuracy_m, flags,"
        " source, received_at)"
        " SELECT d.id, %(start)s + make_interval(secs => s * %(every)s), d.side, d.team,"
        " d.member_id, ST_Project(ST_LineInterpolatePoint(l.g,"
        "   abs(((k * 0.137 + s / 2880.0) %% 2.0) - 1.0))::geography,"
        "   200 + (k %% 8) * 100, radians(90 + 180 * (k %% 2)))::geometry,"
        " 8, '{}', 'batch', %(start)s + make_interval(secs => s * %(every)s + 2)"
        " FROM (SELECT id, side, team, member_id, row_number() OVER (ORDER BY id) AS k"
        "       FROM devices WHERE id = ANY (%(ids)s)) d"
        " CROSS JOIN generate_series(0, %(n)s - 1) s"
        f" CROSS JOIN ({LINE}) l",
        {"start": start, "every": EVERY_S, "n": n, "ids": ids},
    )
    conn.execute(
        "INSERT INTO device_latest (device, side, team, member_id, time, geom, accuracy_m,"
        " seen_at, updated_at)"
        " SELECT DISTINCT ON (device) device, side, team, member_id, time, geom, accuracy_m,"
        " time, received_at FROM positions WHERE device = ANY (%(ids)s)"
        " ORDER BY device, time DESC",
        {"ids": ids},
    )
    conn.execute("ANALYZE positions")
    conn.execute("ANALYZE device_latest")
    conn.execute("ANALYZE devices")
    return len(ids) * n


def measure(conn: Any, pts: list[tuple[float, float]], as_of: Any) -> dict[str, list[float]]:
    """Per point, the anchor (no fix look-up) and the call with ``as_of``, interleaved."""
    out: dict[str, list[float]] = {"anchor": [], "fix": []}
    for x, y in pts[:30]:  # warm the plan and the caches
        conn.execute(QUERY, {"x": x, "y": y, "t": None}, prepare=True).fetchall()
        conn.execute(QUERY, {"x": x, "y": y, "t": as_of()}, prepare=True).fetchall()
    for _ in range(ROUNDS):
        for x, y in pts:
            for name, t in (("anchor", None), ("fix", as_of())):
                t0 = time.perf_counter()
                conn.execute(QUERY, {"x": x, "y": y, "t": t}, prepare=True).fetchall()
                out[name].append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    from layers.db import connect

    url = create_db(DB)
    rows = []
    try:
        with connect(url) as conn:
            conn.autocommit = True
            pts = border_points(conn, 300)

            def now() -> datetime:
                return datetime.now(UTC)

            runs = [("no positions", "now", measure(conn, pts, now))]
            t0 = time.perf_counter()
            stored = load_positions(conn, now())
            load_s = time.perf_counter() - t0
            with_fix = sum(
                1
                for x, y in pts
                if any(
                    t.get("fix")
                    for t in conn.execute(QUERY, {"x": x, "y": y, "t": now()}).fetchone()["facts"][
                        "teams"
                    ]
                )
            )
            runs.append((f"{stored:,} fixes", "now", measure(conn, pts, now)))
            day_ago = now() - timedelta(days=1)
            runs.append((f"{stored:,} fixes", "a day ago", measure(conn, pts, lambda: day_ago)))
        for data, as_of, m in runs:
            a50, a99 = percentile(m["anchor"], 50), percentile(m["anchor"], 99)
            f50, f99 = percentile(m["fix"], 50), percentile(m["fix"], 99)
            rows.append(
                {
                    "positions": data,
                    "fixes as of": as_of,
                    "calls": len(m["fix"]),
                    "anchor p50_ms": round(a50, 2),
                    "anchor p99_ms": round(a99, 2),
                    "with fixes p50_ms": round(f50, 2),
                    "with fixes p99_ms": round(f99, 2),
                    "ratio p50": round(f50 / a50, 2),
                    "ratio p99": round(f99 / a99, 2),
                }
            )
    finally:
        if not os.environ.get("JOINTGRID_BENCH_KEEP"):
            drop_db(DB)
    body = (
        f"300 points within 1.5 km of the line, `jointgrid_facts()` as the report path calls it "
        f"(one point, prepared), {ROUNDS} rounds; the anchor is the same call on the same point "
        "without the fix look-up (`p_as_of` NULL), interleaved with it. Positions: "
        f"{DEVICES_PER_TEAM} devices per team (10 teams), a fix every {EVERY_S} s for {DAYS} "
        f"days along the line (loaded in {load_s:.0f} s); {with_fix} of the 300 points had a "
        "team placed by a fix as of now.\n\n" + table(rows, list(rows[0]))
    )
    print(body)
    write_section("posroute", "Routing by position: the fix look-up per report", body)


if __name__ == "__main__":
    main()
