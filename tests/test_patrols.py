"""Patrol sessions and border patrol coverage, checked on hand-built tracks against an
independent computation (shapely in EPSG:4544, pyproj's geodesic)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import shapely
from pyproj import Geod
from shapely.geometry import LineString, Point, shape

from api.settings import PatrolSettings
from api.usecases.positions import batch
from layers import devices, patrols, positions
from tests.conftest import bearer
from tests.geo import ANJU, TONGNAN, point_inside, to_m

GEOD = Geod(ellps="WGS84")
SETTINGS = PatrolSettings(session_gap_s=600)


def _device(conn: Any, *, side: str = ANJU, last: bool = False) -> dict[str, Any]:
    team = conn.execute(
        "SELECT code FROM teams WHERE side = %s ORDER BY code "
        + ("DESC" if last else "")
        + " LIMIT 1",
        (side,),
    ).fetchone()["code"]
    key, rec = devices.add_device(conn, team=team, member_name=f"巡逻 {uuid.uuid4().hex[:6]}")
    return {**rec, "key": key}


def _post(
    conn: Any, dev: dict[str, Any], pts: list[tuple[float, float]], times: list[datetime]
) -> dict[str, Any]:
    body = {
        "device": dev["id"],
        "fixes": [
            {"lon": x, "lat": y, "time": t.isoformat(), "accuracy": 5}
            for (x, y), t in zip(pts, times, strict=True)
        ],
    }
    out = batch(conn, key=dev["key"], body=body, settings=SETTINGS)
    _apply(conn)
    return out


def _apply(conn: Any) -> dict[str, int]:
    """What the server's patrol worker does after the answers: the sessions and the cells."""
    return patrols.apply_all(conn, gap_s=SETTINGS.session_gap_s)


def _walk(side: str, metres: float, f0: float, f1: float, n: int) -> list[tuple[float, float]]:
    return [point_inside(side, metres, f0 + (f1 - f0) * i / (n - 1)) for i in range(n)]


def _line(a: tuple[float, float], b: tuple[float, float], n: int) -> list[tuple[float, float]]:
    """``n`` points evenly spaced on the straight line from ``a`` to ``b`` (degrees)."""
    return [
        (a[0] + (b[0] - a[0]) * i / (n - 1), a[1] + (b[1] - a[1]) * i / (n - 1)) for i in range(n)
    ]


def _flat(coords: Any) -> list[float]:
    return [float(v) for c in coords for v in c]


def _geodesic(pts: list[tuple[float, float]]) -> float:
    return float(GEOD.line_length([p[0] for p in pts], [p[1] for p in pts]))


T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)


def test_sessions_split_on_silence_and_measure_their_track(conn):
    dev = _device(conn)
    a = _walk(ANJU, 300, 0.30, 0.33, 10)
    b = _walk(ANJU, 300, 0.34, 0.36, 6)
    ta = [T0 + timedelta(seconds=30 * i) for i in range(10)]
    tb = [ta[-1] + timedelta(minutes=20) + timedelta(seconds=30 * i) for i in range(6)]
    _post(conn, dev, a, ta)
    _post(conn, dev, b, tb)
    s = patrols.sessions(conn, device=dev["id"])
    assert [(x["started_at"], x["ended_at"], x["fixes"]) for x in s] == [
        (ta[0], ta[-1], 10),
        (tb[0], tb[-1], 6),
    ]
    for sess, pts in zip(s, (a, b), strict=True):
        assert _flat(sess["track"]["coordinates"]) == pytest.approx(_flat(pts), abs=1e-9)
        assert sess["length_m"] == pytest.approx(_geodesic(pts), rel=2e-3)
        assert sess["duration_s"] == (sess["ended_at"] - sess["started_at"]).total_seconds()


def test_offline_fixes_arriving_after_live_ones_land_in_order(client, conn):
    dev = _device(conn)
    pts = _walk(ANJU, 400, 0.40, 0.43, 12)
    times = [T0 + timedelta(seconds=30 * i) for i in range(12)]
    # the last six live, one request each (OsmAnd)
    for (x, y), t in zip(pts[6:], times[6:], strict=True):
        r = client.get(
            "/osmand",
            params={
                "id": dev["id"],
                "key": dev["key"],
                "lat": y,
                "lon": x,
                "timestamp": int(t.timestamp()),
            },
            headers={"Authorization": ""},
        )
        assert r.status_code == 200
    # then the first six, queued offline, as one batch
    r = client.post(
        "/api/v1/positions",
        json={
            "device": dev["id"],
            "fixes": [
                {"lon": x, "lat": y, "time": t.isoformat()}
                for (x, y), t in zip(pts[:6], times[:6], strict=True)
            ],
        },
        headers=bearer(dev["key"]),
    )
    assert r.status_code == 200, r.text
    _apply(conn)
    (s,) = patrols.sessions(conn, device=dev["id"])
    assert (s["started_at"], s["ended_at"], s["fixes"]) == (times[0], times[-1], 12)
    assert _flat(s["track"]["coordinates"]) == pytest.approx(_flat(pts), abs=1e-9)
    assert s["length_m"] == pytest.approx(_geodesic(pts), rel=2e-3)
    # the latest fix is still the newest one
    latest = conn.execute(
        "SELECT time FROM device_latest WHERE device = %s", (dev["id"],)
    ).fetchone()
    assert latest["time"] == times[-1]


def test_explicit_stop_and_start(client, conn):
    dev = _device(conn)
    pts = _walk(ANJU, 350, 0.45, 0.47, 9)
    times = [T0 + timedelta(seconds=30 * i) for i in range(9)]
    h = bearer(dev["key"])

    def mark(action: str, at: datetime) -> None:
        r = client.post(
            "/api/v1/patrols",
            json={"device": dev["id"], "action": action, "at": at.isoformat()},
            headers=h,
        )
        assert r.status_code == 200, r.text

    mark("start", times[0] - timedelta(seconds=1))
    _post(conn, dev, pts[:3], times[:3])
    mark("stop", times[2] + timedelta(seconds=1))
    _post(conn, dev, pts[3:6], times[3:6])  # stopped: kept, on no patrol
    mark("start", times[5] + timedelta(seconds=1))
    _post(conn, dev, pts[6:], times[6:])
    s = patrols.sessions(conn, device=dev["id"])
    assert [(x["started_at"], x["fixes"], x["explicit"]) for x in s] == [
        (times[0], 3, True),
        (times[6], 3, True),
    ]
    assert len(positions.track(conn, device=dev["id"])) == 9


def _sessions_of(conn: Any, device: str) -> list[tuple[Any, ...]]:
    return [
        (
            x["started_at"],
            x["ended_at"],
            x["fixes"],
            x["explicit"],
            round(x["length_m"], 6),
            round(x["border_m"], 6),
            tuple(
                _flat(x["track"]["coordinates"] if x["fixes"] > 1 else [x["track"]["coordinates"]])
            ),
        )
        for x in patrols.sessions(conn, device=device)
    ]


def test_the_backlog_applied_once_gives_the_sessions_of_a_pass_after_each_batch(conn):
    """The patrol worker applies whatever arrived for a device since its last pass in one call:
    the sessions, their tracks, lengths and border lengths are those of a pass after every
    batch, with a silence that splits a session, a batch that extends one, an offline batch
    older than what is stored, and a flagged fix."""
    each, once = _device(conn, side=TONGNAN), _device(conn, side=TONGNAN)
    pts = _line(point_inside(TONGNAN, 900, 0.15), point_inside(TONGNAN, 100, 0.2), 24)
    times = [T0 + timedelta(minutes=30, seconds=30 * i) for i in range(12)]
    times += [times[-1] + timedelta(minutes=25, seconds=30 * i) for i in range(12)]  # a silence
    batches = [range(4, 9), range(9, 16), range(20, 24), range(16, 20), range(0, 4)]
    for dev in (each, once):
        for b in batches:
            body = {
                "device": dev["id"],
                "fixes": [
                    {
                        "lon": pts[i][0],
                        "lat": pts[i][1],
                        "time": times[i].isoformat(),
                        "accuracy": 500 if i == 10 else 5,
                    }
                    for i in b
                ],
            }
            batch(conn, key=dev["key"], body=body, settings=SETTINGS)
            if dev is each:
                assert _apply(conn)["rows"] == 1
        if dev is once:
            assert _apply(conn) == {"devices": 1, "rows": len(batches)}
    assert conn.execute("SELECT count(*) AS n FROM patrol_backlog").fetchone()["n"] == 0
    got = _sessions_of(conn, once["id"])
    assert [(s[0], s[2]) for s in got] == [(times[0], 11), (times[12], 12)]
    assert got == _sessions_of(conn, each["id"])
    assert _apply(conn) == {"devices": 0, "rows": 0}  # nothing left, nothing done twice


def test_a_device_whose_sessions_fail_does_not_hold_up_the_others(conn):
    """One device's sessions that cannot be built (here a trigger refuses them) leave its
    backlog in place and the other devices' applied, in the same pass."""
    bad, good = _device(conn, side=TONGNAN), _device(conn, side=TONGNAN)
    conn.execute(
        "CREATE FUNCTION pg_temp.refuse_session() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF NEW.device = current_setting('jointgrid.test_bad_device') THEN"
        " RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$"
    )
    conn.execute("SELECT set_config('jointgrid.test_bad_device', %s, true)", (bad["id"],))
    conn.execute(
        "CREATE TRIGGER refuse_session BEFORE INSERT ON patrol_sessions"
        " FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_session()"
    )
    pts = _walk(TONGNAN, 300, 0.3, 0.32, 4)
    times = [T0 + timedelta(hours=4, seconds=30 * i) for i in range(4)]
    for dev in (bad, good):  # the failing device's rows are the oldest
        body = {
            "device": dev["id"],
            "fixes": [
                {"lon": x, "lat": y, "time": t.isoformat()}
                for (x, y), t in zip(pts, times, strict=True)
            ],
        }
        batch(conn, key=dev["key"], body=body, settings=SETTINGS)
    assert _apply(conn) == {"devices": 1, "rows": 1}
    assert [x["fixes"] for x in patrols.sessions(conn, device=good["id"])] == [4]
    assert patrols.sessions(conn, device=bad["id"]) == []
    left = conn.execute("SELECT device FROM patrol_backlog").fetchall()
    assert [r["device"] for r in left] == [bad["id"]]


# -- coverage ------------------------------------------------------------------------------


def _cells(conn: Any, side: str | None) -> dict[str, Any]:
    patrols.ensure_cells(conn)
    return {c["id"]: shape(c["geom"]) for c in patrols.cells(conn, side=side)}


def test_cells_cut_each_zone_into_stretches_of_the_line(conn):
    zone = conn.execute(
        "SELECT ST_AsGeoJSON(geom)::json AS g FROM border WHERE kind = 'zone' AND side = %s",
        (ANJU,),
    ).fetchone()
    z = to_m(shape(zone["g"]))
    cells = {k: to_m(v) for k, v in _cells(conn, ANJU).items()}
    assert len(cells) > 5
    union = shapely.union_all(list(cells.values()))
    assert union.symmetric_difference(z).area / z.area < 1e-3  # the cells cover the zone
    total = sum(c.area for c in cells.values())
    assert total == pytest.approx(z.area, rel=1e-3)  # and do not overlap
    line = conn.execute(
        "SELECT ST_AsGeoJSON(geom)::json AS g FROM border WHERE kind = 'line'"
    ).fetchone()
    length = to_m(shape(line["g"])).length
    assert len(cells) == pytest.approx(length / 500, rel=0.05)
    grids = conn.execute("SELECT id, grid FROM coverage_cells WHERE side = %s", (ANJU,)).fetchall()
    assert all(g["grid"] for g in grids)
    # the grid each cell overlaps most, computed here with shapely
    c0 = grids[len(grids) // 2]
    cand = conn.execute(
        "SELECT code, ST_AsGeoJSON(geom)::json AS g FROM grids WHERE ST_Intersects(geom, (SELECT geom FROM coverage_cells WHERE id = %s))",
        (c0["id"],),
    ).fetchall()
    best = max(cand, key=lambda r: to_m(shape(r["g"])).intersection(cells[c0["id"]]).area)
    assert best["code"] == c0["grid"]


def _expected_minutes(
    pts: list[tuple[float, float]], times: list[datetime], cells: dict[str, Any]
) -> dict[str, float]:
    """Time along each segment inside each cell: its duration shared out by length (EPSG:4544)."""
    out: dict[str, float] = {}
    mcells = {k: to_m(v) for k, v in cells.items()}
    for (p0, p1), (t0, t1) in zip(itertools.pairwise(pts), itertools.pairwise(times), strict=True):
        dur = (t1 - t0).total_seconds() / 60
        if p0 == p1:
            pt = to_m(Point(p0))
            for k, c in mcells.items():
                if c.intersects(pt):
                    out[k] = out.get(k, 0.0) + dur
            continue
        seg = to_m(LineString([p0, p1]))
        for k, c in mcells.items():
            inside = c.intersection(seg).length
            if inside > 0:
                out[k] = out.get(k, 0.0) + dur * inside / seg.length
    return out


def test_coverage_minutes_are_time_along_segments_inside_each_cell(conn):
    dev = _device(conn, side=TONGNAN, last=True)
    t0 = T0 + timedelta(hours=1)
    # a walk 600 m into Tongnan along the line, crossing several cells, then a stand, then a
    # walk back out to the line: fixes at uneven times, so counting fixes would be wrong
    walk = _line(point_inside(TONGNAN, 600, 0.15), point_inside(TONGNAN, 600, 0.2), 14)
    stand = [walk[-1]] * 4
    out = _line(walk[-1], point_inside(TONGNAN, 150, 0.19), 5)
    pts = walk + stand + out
    gaps = [20, 45, 30, 60, 25, 30, 30, 90, 30, 30, 40, 30, 30, 30, 60, 120, 30, 30, 30, 30, 30, 30]
    times = [t0]
    for g in gaps:
        times.append(times[-1] + timedelta(seconds=g))
    assert len(times) == len(pts)
    assert _post(conn, dev, pts, times)["flagged"] == []
    cells = _cells(conn, None)  # a straight walk may cut a corner of the other side's zone
    want = _expected_minutes(pts, times, cells)
    got: dict[str, float] = {}
    for r in patrols.minutes(
        conn, since=t0 - timedelta(minutes=1), until=times[-1] + timedelta(minutes=1), gap_s=600
    ):
        if r["team"] == dev["team"]:
            got[r["cell"]] = got.get(r["cell"], 0.0) + r["minutes"]
    assert set(got) == set(want)
    for k in want:
        assert got[k] == pytest.approx(want[k], rel=0.01, abs=0.01), k
    assert sum(got.values()) == pytest.approx((times[-1] - times[0]).total_seconds() / 60, rel=0.01)
    # last patrolled: every cell the track touched, by this team and side
    touched = conn.execute(
        "SELECT id, last_patrolled_at, last_team, last_side FROM coverage_cells WHERE id = ANY(%s)",
        (list(want),),
    ).fetchall()
    assert all(r["last_team"] == dev["team"] and r["last_side"] == dev["side"] for r in touched)
    # the session's border length is the part of its track inside the cells
    (s,) = patrols.sessions(conn, device=dev["id"])
    track = LineString(pts)
    inside = sum(to_m(track).intersection(to_m(c)).length for c in cells.values())
    assert s["border_m"] == pytest.approx(inside, rel=0.01)
    # a window cutting the track counts only the part in it
    half = times[0] + (times[-1] - times[0]) / 2
    part = sum(
        r["minutes"]
        for r in patrols.minutes(conn, since=t0, until=half, gap_s=600)
        if r["team"] == dev["team"]
    )
    assert part == pytest.approx((half - t0).total_seconds() / 60, rel=0.01)


def test_flagged_fixes_are_left_out_of_tracks_and_coverage(conn):
    dev = _device(conn)
    pts = _walk(ANJU, 500, 0.60, 0.62, 6)
    times = [T0 + timedelta(hours=2, seconds=30 * i) for i in range(6)]
    body = {
        "device": dev["id"],
        "fixes": [
            {"lon": x, "lat": y, "time": t.isoformat(), "accuracy": 500 if i == 2 else 5}
            for i, ((x, y), t) in enumerate(zip(pts, times, strict=True))
        ],
    }
    out = batch(conn, key=dev["key"], body=body, settings=SETTINGS)
    assert out["flagged"] == [{"index": 2, "flags": ["accuracy"]}]
    _apply(conn)
    (s,) = patrols.sessions(conn, device=dev["id"])
    assert s["fixes"] == 5
    assert _flat(s["track"]["coordinates"]) == pytest.approx(
        _flat([p for i, p in enumerate(pts) if i != 2]), abs=1e-9
    )


def test_coverage_command_prints_the_table_with_gaps(db_url):
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "api.cli", "coverage", "--since", "2026-01-01", "--gap-days", "7"],
        env={**os.environ, "DATABASE_URL": db_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("coverage 2026-01-01 00:00")
    cells = [ln for ln in lines if ln.startswith("c:")]
    assert cells and all(ln.split()[1] in (ANJU, TONGNAN) for ln in cells)
    assert any(ln.startswith(f"side {ANJU}:") and "cells are gaps" in ln for ln in lines)


def test_fixes_acknowledged_with_no_worker_running_are_applied_later(db_url):
    """The backlog commits with the fixes: whatever no worker has applied yet (the server
    stopped or crashed after its answers) is applied by the next pass, here the command. (A
    server of the test session on the same database may apply it first; this checks that
    the command runs and that the backlog committed with the fixes is applied.)"""
    import json
    import os
    import subprocess
    import sys

    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(db_url, row_factory=dict_row, autocommit=True) as c:
        dev = _device(c, side=TONGNAN)
        pts = _walk(TONGNAN, 300, 0.3, 0.32, 5)
        times = [T0 + timedelta(hours=3, seconds=30 * i) for i in range(5)]
        body = {
            "device": dev["id"],
            "fixes": [
                {"lon": x, "lat": y, "time": t.isoformat()}
                for (x, y), t in zip(pts, times, strict=True)
            ],
        }
        assert batch(c, key=dev["key"], body=body, settings=SETTINGS)["stored"] == 5
        out = subprocess.run(
            [sys.executable, "-m", "api.cli", "patrols-apply"],
            env={**os.environ, "DATABASE_URL": db_url},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert set(json.loads(out.stdout)) == {"devices", "rows"}
        q = "SELECT count(*) AS n FROM patrol_backlog WHERE device = %s"
        assert c.execute(q, (dev["id"],)).fetchone()["n"] == 0
        (s,) = patrols.sessions(c, device=dev["id"])
        assert (s["started_at"], s["ended_at"], s["fixes"]) == (times[0], times[-1], 5)
