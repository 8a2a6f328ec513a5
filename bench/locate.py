"""Locate: GET /api/v1/locate at province scale (about 200,000 grids), p50 and p99, beside a
bare SQL ST_Intersects on the same grid index (the anchor), and the facts engine alone.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from bench._common import (
    ROOT,
    free_port,
    percentile,
    province_url,
    run_load_in_subprocess,
    serve,
    settle,
    table,
    write_section,
)
from bench.ingest import key_for, report_bodies

SECONDS = float(os.environ.get("JOINTGRID_BENCH_SECONDS", "20"))
SQL_POINTS = int(os.environ.get("JOINTGRID_BENCH_LOCATE_POINTS", "5000"))  # per SQL measure


def sql_latencies(url: str, pts: list[tuple[float, float]], query: str) -> list[float]:
    from layers.db import connect

    out = []
    with connect(url) as conn:
        conn.autocommit = True
        for x, y in pts[:50]:
            conn.execute(query, {"x": x, "y": y}, prepare=True).fetchall()
        for x, y in pts:
            t = time.perf_counter()
            conn.execute(query, {"x": x, "y": y}, prepare=True).fetchall()
            out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    url = province_url()
    waited = settle(url)
    bodies = report_bodies(url, 20_000, seed=23)
    pts = [(float(b["lon"]), float(b["lat"])) for b in bodies]  # type: ignore[arg-type]
    bare = sql_latencies(
        url,
        pts[:SQL_POINTS],
        "SELECT code FROM grids WHERE ST_Intersects(geom, ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), 4326))",
    )
    facts = sql_latencies(
        url,
        pts[:SQL_POINTS],
        "SELECT facts FROM jointgrid_facts(ARRAY[%(x)s::float8], ARRAY[%(y)s::float8], 2000.0)",
    )
    token = key_for(url)
    headers = {"Authorization": f"Bearer {token}"}
    reqs = [["GET", f"/api/v1/locate?lon={x}&lat={y}", None, headers] for x, y in pts]
    port = free_port()
    logdir = ROOT / "var" / "bench"
    logdir.mkdir(parents=True, exist_ok=True)
    env = {"DATABASE_URL": url, "JOINTGRID_ESCALATION_INTERVAL_S": "0"}
    with serve(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env, port,
        logdir / "locate-server.log",
    ):  # fmt: skip
        run_load_in_subprocess(
            {"port": port, "requests": reqs[:1000], "concurrency": 1, "seconds": 3}
        )
        http = run_load_in_subprocess(
            {"port": port, "requests": reqs[1000:], "concurrency": 1, "seconds": SECONDS}
        )

    def row(name: str, lat: list[float]) -> dict[str, object]:
        return {
            "what": name,
            "n": len(lat),
            "p50_ms": round(percentile(lat, 50), 2),
            "p99_ms": round(percentile(lat, 99), 2),
            "mean_ms": round(float(np.mean(lat)), 2),
        }

    rows = [
        {"what": "GET /api/v1/locate (HTTP, one connection)", "n": http["requests"],
         "p50_ms": http["p50_ms"], "p99_ms": http["p99_ms"], "mean_ms": ""},
        row("jointgrid_facts() on one point alone (SQL, prepared)", facts),
        row("anchor: bare ST_Intersects on grids (SQL, prepared)", bare),
    ]  # fmt: skip
    ratio = float(http["p99_ms"]) / percentile(bare, 99)
    ok = ratio <= 8.0
    body = f"""
Points spread over the province (about 200,000 grids, 145 sides); one request at a time, on a
settled database (autovacuum idle and a CHECKPOINT first: {waited:.0f} s waited).

{table(rows, ["what", "n", "p50_ms", "p99_ms", "mean_ms"])}

**p99 {http["p99_ms"]} ms**, {ratio:.1f}× the bare ST_Intersects p99 measured in the same run
(target ≤ 8×: {"met" if ok else "missed"}).
"""
    write_section("locate", "Locate", body)
    print(body)


if __name__ == "__main__":
    main()
