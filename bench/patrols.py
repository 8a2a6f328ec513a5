"""Patrol positions: intake, coverage and the latest-positions layer, each beside an anchor
measured in the same run.

- batch intake through ``POST /api/v1/positions`` (batches of 100) beside a COPY of the same
  rows into a table of the same columns and indexes (the ceiling);
- live intake through ``/osmand``, one fix per request, beside the one-INSERT endpoint of the
  ingestion benchmark (``bench/_ceiling_app.py``);
- the coverage of the stored window (``patrol_coverage_minutes``) beside a raw PostGIS join of
  the same fixes and cells;
- the latest team positions (``/ogc/collections/team_positions/items``), p50 and p99.

The issue's scale is 510 devices, a fix every 30 s for 2 days (about 3 million fixes). The
defaults here are smaller (``JOINTGRID_BENCH_PATROL_DEVICES``, ``..._HOURS``), since the
machine's two cores are shared; the section written says what ran.

    .venv/bin/python -m bench.patrols
    JOINTGRID_BENCH_PATROL_DEVICES=510 JOINTGRID_BENCH_PATROL_HOURS=48 .venv/bin/python -m bench.patrols
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench._common import (
    ROOT,
    create_db,
    drop_db,
    free_port,
    run_load_in_subprocess,
    serve,
    table,
    write_section,
)

DB = "jointgrid_bench_patrols"
DEVICES = int(os.environ.get("JOINTGRID_BENCH_PATROL_DEVICES", "510"))
HOURS = float(os.environ.get("JOINTGRID_BENCH_PATROL_HOURS", "2"))
LIVE_DEVICES = int(os.environ.get("JOINTGRID_BENCH_PATROL_LIVE_DEVICES", "100"))
LIVE_FIXES = int(os.environ.get("JOINTGRID_BENCH_PATROL_LIVE_FIXES", "20000"))
CONCURRENCY = int(os.environ.get("JOINTGRID_BENCH_CONCURRENCY", "8"))
SECONDS = float(os.environ.get("JOINTGRID_BENCH_SECONDS", "30"))
STEP_S = 30
BATCH = 100


def _walks(
    conn: Any, n: int, fixes: int, t0: datetime, seed: int
) -> list[list[tuple[datetime, float, float]]]:
    """``n`` walks of ``fixes`` fixes every 30 s from ``t0``, at walking pace (1.4 m/s, a
    random heading that drifts), each starting in a cell of the border zone."""
    rnd = random.Random(seed)
    starts = [
        (r["x"], r["y"])
        for r in conn.execute(
            "SELECT ST_X(p) AS x, ST_Y(p) AS y FROM (SELECT ST_PointOnSurface(geom) AS p"
            " FROM coverage_cells) s"
        )
    ]
    out = []
    for i in range(n):
        x, y = starts[i % len(starts)]
        h = rnd.uniform(0, 2 * math.pi)
        walk = []
        for k in range(fixes):
            walk.append((t0 + timedelta(seconds=STEP_S * k), x, y))
            h += rnd.gauss(0, 0.4)
            d = 1.4 * STEP_S
            x += d * math.sin(h) / (111_320 * math.cos(math.radians(y)))
            y += d * math.cos(h) / 111_320
        out.append(walk)
    return out


def _devices(conn: Any, n: int, tag: str) -> list[tuple[str, str]]:
    from layers import devices

    teams = [r["code"] for r in conn.execute("SELECT code FROM teams ORDER BY code")]
    out = []
    for i in range(n):
        key, rec = devices.add_device(
            conn,
            team=teams[i % len(teams)],
            member_name=f"bench {tag} {i}",
            device_id=f"{tag}{i:05d}",
        )
        out.append((rec["id"], key))
    return out


def _cpu_s(pids: set[int] | None = None, comm: str | None = None) -> float:
    """CPU seconds (user + system) of the processes ``pids``, or of every process named
    ``comm`` (the local cluster's PostgreSQL processes), from /proc."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if pids is not None and int(entry) not in pids:
                continue
            if comm is not None and Path(f"/proc/{entry}/comm").read_text().strip() != comm:
                continue
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / hz


def _until_applied(url: str, connect: Any, timeout: float = 600.0) -> float:
    """Seconds until the patrol worker has emptied the backlog (sessions and cells done)."""
    t = time.perf_counter()
    with connect(url) as conn:
        conn.autocommit = True
        while conn.execute("SELECT count(*) AS n FROM patrol_backlog").fetchone()["n"]:
            if time.perf_counter() - t > timeout:
                raise RuntimeError("the patrol backlog was not applied in time")
            time.sleep(0.05)
    return time.perf_counter() - t


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def main() -> None:
    from layers.db import connect

    url = create_db(DB)
    try:
        _run(url, connect)
    finally:
        if os.environ.get("JOINTGRID_BENCH_KEEP") != "1":
            drop_db(DB)


def _run(url: str, connect: Any) -> None:
    logdir = ROOT / "var" / "bench"
    logdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    fixes_per_device = int(HOURS * 3600 / STEP_S)
    now = datetime.now(UTC).replace(microsecond=0)
    t0 = now - timedelta(seconds=STEP_S * fixes_per_device + 600)
    with connect(url) as conn:
        conn.autocommit = True
        conn.execute("SELECT coverage_cells_ready()")
        conn.execute("SELECT positions_maintain(90, 3, 2)")
        batch_devs = _devices(conn, DEVICES, "b")
        live_devs = _devices(conn, LIVE_DEVICES, "l")
        from layers import keys

        admin_key, _ = keys.create(conn, role="admin", side=None, name="bench")
        walks = _walks(conn, DEVICES, fixes_per_device, t0, seed=3)
        live_n = max(1, LIVE_FIXES // LIVE_DEVICES)
        live_walks = _walks(
            conn, LIVE_DEVICES, live_n, now - timedelta(seconds=STEP_S * live_n + 300), seed=5
        )
        ncells = conn.execute("SELECT count(*) AS n FROM coverage_cells").fetchone()["n"]

    # batch requests, round-robin over devices so that concurrent requests are of different devices
    per_dev = [[walk[k : k + BATCH] for k in range(0, len(walk), BATCH)] for walk in walks]
    batch_reqs = []
    for j in range(max(len(p) for p in per_dev)):
        for (dev, key), chunks in zip(batch_devs, per_dev, strict=True):
            if j < len(chunks):
                body = {
                    "device": dev,
                    "fixes": [
                        {"lon": x, "lat": y, "time": _iso(t), "accuracy": 6}
                        for t, x, y in chunks[j]
                    ],
                }
                batch_reqs.append(
                    [
                        "POST",
                        "/api/v1/positions",
                        json.dumps(body),
                        {"Authorization": f"Bearer {key}"},
                    ]
                )
    total_fixes = sum(len(w) for w in walks)

    live_reqs = []
    for k in range(live_n):
        for (dev, key), walk in zip(live_devs, live_walks, strict=True):
            t, x, y = walk[k]
            q = urlencode({"key": key}) + "&" + urlencode(
                {"id": dev, "timestamp": int(t.timestamp()), "lat": y, "lon": x, "speed": 2.7,
                 "bearing": 0.0, "altitude": 300.0, "accuracy": 6.0, "batt": 80.0}
            )  # fmt: skip
            live_reqs.append(["GET", f"/osmand?{q}", None, {}])
    ceiling_reqs = [
        ["POST", "/api/v1/incidents", json.dumps({"lon": r[1], "lat": r[2], "category": "x"}), {}]
        for w in live_walks
        for r in w
    ][: len(live_reqs)]

    env = {"DATABASE_URL": url, "JOINTGRID_ESCALATION_INTERVAL_S": "0"}
    port = free_port()
    with serve(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "1"],
        env,
        port,
        logdir / "patrols-server.log",
    ) as server:
        cpu0 = (_cpu_s({server.pid}), _cpu_s(comm="postgres"))
        t = time.perf_counter()
        batch = run_load_in_subprocess(
            {"port": port, "requests": batch_reqs, "concurrency": CONCURRENCY, "seconds": 3600}
        )
        batch_s = time.perf_counter() - t
        cpu1 = (_cpu_s({server.pid}), _cpu_s(comm="postgres"))
        tail_s = _until_applied(url, connect)
        cpu2 = (_cpu_s({server.pid}), _cpu_s(comm="postgres"))
        print("batch", batch, round(batch_s, 1), "applied after", round(tail_s, 2), flush=True)
        live = run_load_in_subprocess(
            {"port": port, "requests": live_reqs, "concurrency": CONCURRENCY, "seconds": SECONDS}
        )
        live_tail_s = _until_applied(url, connect)
        print("live", live, "applied after", round(live_tail_s, 2), flush=True)
        latest = run_load_in_subprocess(
            {
                "port": port,
                "requests": [
                    ["GET", "/map/data/layers/team_positions", None,
                     {"Authorization": f"Bearer {admin_key}"}]
                ] * 3000,
                "concurrency": 4,
                "seconds": 15,
            }
        )  # fmt: skip
    port = free_port()
    with serve(
        [sys.executable, "-m", "uvicorn", "bench._ceiling_app:create_app", "--factory",
         "--port", str(port), "--workers", "1", "--log-level", "warning"],
        env,
        port,
        logdir / "patrols-ceiling.log",
    ):  # fmt: skip
        ceiling = run_load_in_subprocess(
            {"port": port, "requests": ceiling_reqs, "concurrency": CONCURRENCY, "seconds": SECONDS}
        )

    with connect(url) as conn:
        conn.autocommit = True
        stored = conn.execute(
            "SELECT count(*) AS n FROM positions WHERE device LIKE 'b%%'"
        ).fetchone()["n"]
        # the ceiling: COPY of the same rows into a table with the same columns and indexes
        conn.execute("CREATE TABLE bench_positions_copy (LIKE positions INCLUDING ALL)")
        buf = io.StringIO()
        for (dev, _key), walk in zip(batch_devs, walks, strict=True):
            for t, x, y in walk:
                buf.write(
                    f"{dev}\t{_iso(t)}\t510904\tT01\tM0\tSRID=4326;POINT({x} {y})\t6\t\\N\t\\N\t\\N\t\\N\t{{}}\tbatch\n"
                )
        data = buf.getvalue()
        tc = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY bench_positions_copy (device, time, side, team, member_id, geom, accuracy_m,"
                " speed_mps, bearing, altitude_m, battery, flags, source) FROM STDIN"
            ) as cp,
        ):
            cp.write(data)
        copy_s = time.perf_counter() - tc
        conn.execute("ANALYZE positions")
        conn.execute("ANALYZE patrol_sessions")
        since, until = t0, now

        def best(stmt: str, params: tuple[Any, ...]) -> tuple[float, Any]:
            times, got = [], None
            for _ in range(3):
                ts = time.perf_counter()
                got = conn.execute(stmt, params).fetchone()
                times.append(time.perf_counter() - ts)
            return min(times), got

        cov_s, cov = best(
            "SELECT count(*) AS cells, sum(minutes) AS minutes FROM patrol_coverage_minutes(%s, %s, 600)",
            (since, until),
        )
        raw_s, raw = best(
            """
            WITH s AS (
                SELECT time AS t0, lead(time) OVER w AS t1, geom AS g0, lead(geom) OVER w AS g1
                FROM positions WHERE time >= %s AND time < %s AND flags = '{}'
                WINDOW w AS (PARTITION BY device ORDER BY time)
            )
            SELECT count(DISTINCT c.id) AS cells,
                   sum(extract(epoch FROM s.t1 - s.t0) / 60.0
                       * ST_Length(ST_Intersection(c.geom, ST_MakeLine(s.g0, s.g1))::geography)
                       / NULLIF(ST_Length(ST_MakeLine(s.g0, s.g1)::geography), 0)) AS minutes
            FROM s JOIN coverage_cells c ON ST_Intersects(c.geom, ST_MakeLine(s.g0, s.g1))
            WHERE s.t1 IS NOT NULL AND s.t1 - s.t0 <= interval '600 seconds'
            """,
            (since, until),
        )
        parts_s, parts = best(
            """
            WITH s AS (
                SELECT time AS t0, lead(time) OVER w AS t1, geom AS g0, lead(geom) OVER w AS g1
                FROM positions WHERE time >= %s AND time < %s AND flags = '{}'
                WINDOW w AS (PARTITION BY device ORDER BY time)
            )
            SELECT count(DISTINCT c.cell_id) AS cells,
                   sum(extract(epoch FROM s.t1 - s.t0) / 60.0
                       * ST_Length(ST_Intersection(c.geom, ST_MakeLine(s.g0, s.g1))::geography)
                       / NULLIF(ST_Length(ST_MakeLine(s.g0, s.g1)::geography), 0)) AS minutes
            FROM s JOIN coverage_cell_parts c ON ST_Intersects(c.geom, ST_MakeLine(s.g0, s.g1))
            WHERE s.t1 IS NOT NULL AND s.t1 - s.t0 <= interval '600 seconds'
            """,
            (since, until),
        )
        n_positions = conn.execute("SELECT count(*) AS n FROM positions").fetchone()["n"]
    load_after = os.getloadavg()

    batch_fps = stored / batch_s
    applied_fps = stored / (batch_s + tail_s)
    nb = max(1, int(batch["requests"]))
    cpu_ms = {  # core-milliseconds a batch, while answering and with the backlog applied
        "server": 1000 * (cpu1[0] - cpu0[0]) / nb,
        "postgres": 1000 * (cpu1[1] - cpu0[1]) / nb,
        "server_all": 1000 * (cpu2[0] - cpu0[0]) / nb,
        "postgres_all": 1000 * (cpu2[1] - cpu0[1]) / nb,
    }
    copy_ms = 1000 * copy_s * BATCH / total_fixes  # COPY's own time for a batch's rows
    copy_fps = total_fixes / copy_s
    ratio_batch = batch_fps / copy_fps
    ratio_live = float(live["per_s"]) / float(ceiling["per_s"])
    ratio_cov = cov_s / min(raw_s, parts_s)
    rows = [
        {"path": f"POST /api/v1/positions, batches of {BATCH}", "fixes": stored, "seconds": round(batch_s, 1),
         "fixes_per_s": round(batch_fps), "p50_ms": batch["p50_ms"], "p99_ms": batch["p99_ms"], "errors": batch["errors"]},
        {"path": "the same, until the patrol worker has applied the last of them", "fixes": stored,
         "seconds": round(batch_s + tail_s, 1), "fixes_per_s": round(applied_fps)},
        {"path": "ceiling: COPY of the same rows (same columns and indexes)", "fixes": total_fixes,
         "seconds": round(copy_s, 2), "fixes_per_s": round(copy_fps)},
        {"path": "/osmand, one fix per request", "fixes": live["ok"], "seconds": live["seconds"],
         "fixes_per_s": live["per_s"], "p50_ms": live["p50_ms"], "p99_ms": live["p99_ms"], "errors": live["errors"]},
        {"path": "ceiling: the one-INSERT endpoint (bench/_ceiling_app.py)", "fixes": ceiling["ok"],
         "seconds": ceiling["seconds"], "fixes_per_s": ceiling["per_s"], "p50_ms": ceiling["p50_ms"],
         "p99_ms": ceiling["p99_ms"], "errors": ceiling["errors"]},
    ]  # fmt: skip
    cols = ["path", "fixes", "seconds", "fixes_per_s", "p50_ms", "p99_ms", "errors"]
    body = f"""
Scale of this run: {DEVICES} devices with a fix every {STEP_S} s for {HOURS:g} h
({total_fixes:,} fixes by batch), {LIVE_DEVICES} more devices posting {len(live_reqs):,} fixes
one by one to `/osmand`; {ncells} coverage cells on the two real districts' border zone;
{n_positions:,} positions stored in all. The issue's scale is 510 devices for 2 days (about 3
million fixes); a run's is set by `JOINTGRID_BENCH_PATROL_DEVICES` and `JOINTGRID_BENCH_PATROL_HOURS`
(2 cores; load average {load_before[0]:.1f} before and {load_after[0]:.1f} after the run). One uvicorn worker,
{CONCURRENCY} keep-alive connections from the load generator in its own process.

{table(rows, cols)}

- **Batch intake: {ratio_batch:.0%} of COPY** as answered (target ≥ 50 %:
  {"met" if ratio_batch >= 0.5 else "missed"}); {applied_fps / copy_fps:.0%} counted until the patrol
  worker had applied the last batch ({tail_s:.2f} s after the last answer).
  A batch is read and judged as columns (`gis.fixes.read_batch`, numpy), then stored by one
  statement that is its own transaction, committed before the answer (`positions_store`:
  the fixes, the device's and team's latest fix, and the device's row of the patrol
  backlog); the server's patrol worker then applies the backlog (`patrol_apply_backlog`:
  the sessions' tracks and lengths, the border cells touched and their "last patrolled"),
  a device at a time with whatever arrived for it since. COPY does none of this but the rows.
- **Where a batch's time goes** (CPU of the server process and of the cluster's PostgreSQL
  processes from /proc, over the batch load, per batch of {BATCH}): the server
  {cpu_ms["server"]:.2f} core-ms, PostgreSQL {cpu_ms["postgres"]:.2f} core-ms while answering
  ({cpu_ms["server_all"]:.2f} and {cpu_ms["postgres_all"]:.2f} with the backlog applied), beside
  COPY's {copy_ms:.2f} ms for the same rows, on two cores that also run the load generator.
- **Live intake: {ratio_live:.0%} of the one-INSERT endpoint** ({live["per_s"]}/s against
  {ceiling["per_s"]}/s; the backlog applied {live_tail_s:.2f} s after the last answer).
- **Coverage of the stored window ({HOURS:g} h): {cov_s * 1000:.0f} ms, {ratio_cov:.2f}× the
  faster raw PostGIS join** of the same fixes and cells (target ≤ 2×:
  {"met" if ratio_cov <= 2 else "missed"}): a raw join of the segments with the whole cells
  took {raw_s * 1000:.0f} ms, with the cells' subdivided pieces (`coverage_cell_parts`, which
  the coverage function uses too) {parts_s * 1000:.0f} ms. Ours gave {cov["cells"]} (cell,
  day, team) rows and {float(cov["minutes"] or 0):,.0f} patrolled minutes (the raw joins:
  {raw["cells"]} and {parts["cells"]} cells, {float(raw["minutes"] or 0):,.0f} and
  {float(parts["minutes"] or 0):,.0f} minutes, with no session or window clipping).
- **Latest team positions** (the map's live layer `/map/data/layers/team_positions`, every
  team's latest fix read from `team_latest`, 4 connections):
  p50 {latest["p50_ms"]} ms, p99 {latest["p99_ms"]} ms, {latest["per_s"]}/s.
"""
    write_section("patrols", "Patrol positions: intake, coverage, latest positions", body)
    print(body)
    Path(logdir / "patrols.json").write_text(
        json.dumps({"batch": batch, "live": live, "ceiling": ceiling, "latest": latest,
                    "copy_s": copy_s, "batch_s": batch_s, "tail_s": tail_s, "live_tail_s": live_tail_s,
                    "cpu_ms": cpu_ms, "cov_s": cov_s, "raw_s": raw_s}, default=str)
    )  # fmt: skip


if __name__ == "__main__":
    main()
