"""Report ingestion: POST /api/v1/incidents through uvicorn, at province scale, beside the
stack's ceiling (bench/_ceiling_app.py: the same stack, an endpoint that INSERTs one row).

Every report runs the full path: validation, the location facts (one SQL round trip), the pure
decision, the insert and its audit event (hash chain), and the 201 with the case. The load
comes from a lean asyncio client in its own process, on loopback. Server RSS is sampled
during the run (the memory benchmark).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from bench._common import (
    ROOT,
    free_port,
    province_url,
    rss_mb,
    run_load_in_subprocess,
    serve,
    table,
    write_section,
)

SECONDS = float(os.environ.get("JOINTGRID_BENCH_SECONDS", "20"))
CONCURRENCY = int(os.environ.get("JOINTGRID_BENCH_CONCURRENCY", "16"))
WORKERS = int(os.environ.get("JOINTGRID_BENCH_WORKERS", "2"))


def report_bodies(url: str, n: int, seed: int = 11) -> list[dict[str, object]]:
    """``n`` report bodies at random places of the province (grids picked uniformly)."""
    from layers.db import connect

    rng = np.random.default_rng(seed)
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT ST_XMin(geom) AS a, ST_YMin(geom) AS b, ST_XMax(geom) AS c, ST_YMax(geom) AS d"
            " FROM grids TABLESAMPLE SYSTEM (10) REPEATABLE (7)"
        ).fetchall()
    from api import settings
    from api.catalogue import load_catalogue

    cat = load_catalogue(settings.data().catalogue)
    codes = sorted(cat.categories)
    b = np.array([[r["a"], r["b"], r["c"], r["d"]] for r in rows])
    pick = b[rng.integers(0, len(b), n)]
    u = rng.random((n, 2))
    # inside the grid's box: a sample of real grids' boxes can stick out of a side a little;
    # the server answers those as it should (snapped or outside), which is part of the load
    lon = pick[:, 0] + (pick[:, 2] - pick[:, 0]) * (0.25 + 0.5 * u[:, 0])
    lat = pick[:, 1] + (pick[:, 3] - pick[:, 1]) * (0.25 + 0.5 * u[:, 1])
    sev = ["red", "orange", "yellow", "yellow", "blue"]
    return [
        {
            "lon": round(float(x), 7),
            "lat": round(float(y), 7),
            "category": codes[int(rng.integers(len(codes)))],
            "severity": sev[int(rng.integers(len(sev)))],
            "description": "benchmark report",
        }
        for x, y in zip(lon, lat, strict=True)
    ]


def key_for(url: str) -> str:
    from layers import keys
    from layers.db import connect

    with connect(url) as conn:
        conn.autocommit = True
        side = conn.execute(
            "SELECT code FROM areas WHERE level = 'district' ORDER BY code LIMIT 1"
        ).fetchone()
        token, _ = keys.create(conn, role="grid_worker", side=side["code"], name="bench")  # type: ignore[index]
    return token


def sample_rss(pid: int, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        out.append(rss_mb(pid))
        time.sleep(0.25)


def measure(port: int, pid: int, requests: list[list[object]], seconds: float) -> dict[str, object]:
    warm = {"port": port, "requests": requests[:2000], "concurrency": CONCURRENCY, "seconds": 3}
    run_load_in_subprocess(warm)
    rss: list[float] = []
    stop = threading.Event()
    t = threading.Thread(target=sample_rss, args=(pid, stop, rss), daemon=True)
    t.start()
    res = run_load_in_subprocess(
        {"port": port, "requests": requests[2000:], "concurrency": CONCURRENCY, "seconds": seconds}
    )
    stop.set()
    t.join()
    res["rss_max_mb"] = round(max(rss), 1) if rss else None
    res["rss_per_worker_mb"] = (
        round(max(rss) / (WORKERS + (1 if WORKERS > 1 else 0)), 1) if rss else None
    )
    return res


def main() -> None:
    url = province_url()
    token = key_for(url)
    n = int(SECONDS * 3000) + 2000
    bodies = report_bodies(url, n)
    headers = {"Authorization": f"Bearer {token}"}
    reqs = [
        [
            "POST",
            "/api/v1/incidents",
            json.dumps(b),
            {**headers, "Idempotency-Key": str(uuid.uuid4())},
        ]
        for b in bodies
    ]
    logdir = ROOT / "var" / "bench"
    logdir.mkdir(parents=True, exist_ok=True)
    env = {"DATABASE_URL": url, "JOINTGRID_ESCALATION_INTERVAL_S": "0"}

    port = free_port()
    with serve(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", str(WORKERS)],
        env,
        port,
        logdir / "ingest-server.log",
    ) as proc:
        full = measure(port, proc.pid, reqs, SECONDS)

    port = free_port()
    with serve(
        [sys.executable, "-m", "uvicorn", "bench._ceiling_app:create_app", "--factory",
         "--port", str(port), "--workers", str(WORKERS), "--log-level", "info"],
        env,
        port,
        logdir / "ceiling-server.log",
    ) as proc:  # fmt: skip
        ceiling = measure(port, proc.pid, reqs, SECONDS)

    ratio = float(full["per_s"]) / float(ceiling["per_s"])  # type: ignore[arg-type]
    rows = [
        {"endpoint": "POST /api/v1/incidents (full decision + audit event)", **full},
        {"endpoint": "ceiling: same stack, INSERT one row", **ceiling},
    ]
    cols = ["endpoint", "requests", "errors", "per_s", "p50_ms", "p99_ms", "max_ms", "rss_max_mb"]
    ok_t = float(full["per_s"]) >= 1000  # type: ignore[arg-type]
    ok_p = float(full["p99_ms"]) <= 50  # type: ignore[arg-type]
    body = f"""
{WORKERS} uvicorn worker(s), {CONCURRENCY} keep-alive connections from the load generator (its
own process), {SECONDS:.0f} s after a 3 s warm-up, reports spread over the province; the
server, PostgreSQL and the load generator share the machine's 2 cores.

{table(rows, cols)}

**Throughput ratio to the ceiling: {ratio:.0%}** (target ≥ 50 %). Targets: ≥ 1,000 reports/s
({"met" if ok_t else "missed"}: {full["per_s"]}/s), p99 ≤ 50 ms ({"met" if ok_p else "missed"}:
{full["p99_ms"]} ms).

**Memory:** server RSS peaked at {full["rss_max_mb"]} MB for {WORKERS} worker(s) plus the
supervisor, about {full["rss_per_worker_mb"]} MB per process (target ≤ 300 MB per worker).
"""
    write_section("ingest", "Report ingestion and memory", body)
    print(body)
    Path(logdir / "ingest.json").write_text(json.dumps({"full": full, "ceiling": ceiling}))


if __name__ == "__main__":
    main()
