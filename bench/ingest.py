"""Report ingestion: POST /api/v1/incidents through uvicorn, at province scale, beside the
stack's ceiling (bench/_ceiling_app.py: the same stack, an endpoint that INSERTs one row).

Every report runs the full path: validation, the location facts (one SQL round trip), the pure
decision, the insert and its audit event (hash chain), and the 201 with the case. The load
comes from a lean asyncio client in its own process, on loopback. Each worker's RSS and PSS
are sampled during the run (the memory benchmark: PSS counts the pages a worker shares with
the supervisor and the other worker once, split between them; RSS counts them in full).

``python -m bench.ingest steps 2000`` times the steps of that many reports made one after
another in this process through the same use-case (``api.usecases.cases.report``), each
step's real function wrapped in a timer: the facts' round trip, the decision, the insert's
round trip (with its commit), the case's view, and orjson's encoding and size of the answer.

``python -m bench.ingest pairs "commit_delay=500 commit_siblings=5" 3`` instead measures the
full path alone in paired rounds, without and with those PostgreSQL settings (set for the
server's sessions through the connection's ``options``), alternating, and prints the table.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from bench._common import (
    ROOT,
    free_port,
    province_url,
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


def _kb(path: Path, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def memory_of(pid: int) -> dict[int, tuple[float, float]]:
    """RSS and PSS in MB of the server process and each of its children (the workers)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return {
        p: (
            _kb(Path(f"/proc/{p}/status"), "VmRSS:") / 1024.0,
            _kb(Path(f"/proc/{p}/smaps_rollup"), "Pss:") / 1024.0,
        )
        for p in pids
    }


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each of ``pids`` still alive."""
    out = {}
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            out[p] = (int(f[11]) + int(f[12])) / _TICK
    return out


def backends(url: str, app: str) -> list[int]:
    """The PostgreSQL backends of the server under test (its sessions' application_name)."""
    from layers.db import connect

    with connect(url) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
        ).fetchall()
    return [int(r["pid"]) for r in rows]


def sample_memory(
    pid: int, stop: threading.Event, out: list[dict[int, tuple[float, float]]]
) -> None:
    while not stop.is_set():
        out.append(memory_of(pid))
        time.sleep(0.5)


def load_in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """``run_load_in_subprocess``, with the load generator's own error shown if it fails."""
    import subprocess

    try:
        return run_load_in_subprocess(spec)
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"the load generator failed: {exc.stderr.decode()[-2000:]}") from exc


def measure(
    port: int, pid: int, requests: list[list[object]], seconds: float, url: str = "", app: str = ""
) -> dict[str, object]:
    warm = {"port": port, "requests": requests[:2000], "concurrency": CONCURRENCY, "seconds": 3}
    load_in_subprocess(warm)
    procs = list(memory_of(pid))
    server0 = cpu_s(procs)
    pg0 = cpu_s(backends(url, app)) if app else {}
    mem: list[dict[int, tuple[float, float]]] = []
    stop = threading.Event()
    t = threading.Thread(target=sample_memory, args=(pid, stop, mem), daemon=True)
    t.start()
    res = load_in_subprocess(
        {"port": port, "requests": requests[2000:], "concurrency": CONCURRENCY, "seconds": seconds}
    )
    stop.set()
    t.join()
    # CPU per request: the server's processes, and the PostgreSQL backends of its sessions
    server1 = cpu_s(procs)
    res["server_cpu_ms"] = round(
        1000
        * sum(v - server0.get(k, v) for k, v in server1.items())
        / max(1, int(res["requests"])),
        2,
    )
    if app:
        pg1 = cpu_s(backends(url, app))
        res["pg_cpu_ms"] = round(
            1000 * sum(v - pg0.get(k, 0.0) for k, v in pg1.items()) / max(1, int(res["requests"])),
            2,
        )
    if mem:
        res["rss_max_mb"] = round(max(sum(r for r, _ in m.values()) for m in mem), 1)
        workers = [(r, p) for m in mem for k, (r, p) in m.items() if k != pid] or [
            m[pid] for m in mem
        ]
        res["rss_worker_mb"] = round(max(r for r, _ in workers), 1)
        res["pss_worker_mb"] = round(max(p for _, p in workers), 1)
        res["rss_supervisor_mb"] = round(max(m[pid][0] for m in mem if pid in m), 1)
    return res


def with_options(url: str, settings: str) -> str:
    """``url`` whose sessions start with these PostgreSQL settings (``name=value`` ...)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    opts = " ".join(f"-c {kv}" for kv in settings.split())
    params["options"] = (str(params.get("options") or "") + " " + opts).strip()
    return make_conninfo(**params)  # type: ignore[arg-type]


def requests_for(url: str, n: int, seed: int = 11) -> list[list[object]]:
    token = key_for(url)
    headers = {"Authorization": f"Bearer {token}"}
    return [
        [
            "POST",
            "/api/v1/incidents",
            json.dumps(b),
            {**headers, "Idempotency-Key": str(uuid.uuid4())},
        ]
        for b in report_bodies(url, n, seed)
    ]


def named(url: str, app: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    return make_conninfo(**{**conninfo_to_dict(url), "application_name": app})  # type: ignore[arg-type]


def run_full(url: str, reqs: list[list[object]], seconds: float, log: str) -> dict[str, object]:
    logdir = ROOT / "var" / "bench"
    logdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    app = f"bench-ingest-{port}"
    env = {"DATABASE_URL": named(url, app), "JOINTGRID_ESCALATION_INTERVAL_S": "0"}
    with serve(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", str(WORKERS)],
        env,
        port,
        logdir / log,
    ) as proc:
        return measure(port, proc.pid, reqs, seconds, url, app)


def steps(n: int) -> None:
    """Where one report's time goes, step by step, one report at a time (no concurrency)."""
    from collections import defaultdict

    import orjson

    from api import settings
    from api.catalogue import load_catalogue
    from api.usecases import cases
    from api.usecases.schemas import ReportIn
    from layers import incidents, locate
    from layers.db import connect

    url = province_url()
    cat = load_catalogue(settings.data().catalogue)
    bodies = report_bodies(url, n + 50, seed=31)
    spent: dict[str, list[float]] = defaultdict(list)
    backend_cpu: dict[str, float] = defaultdict(float)  # the session's backend, CPU seconds
    backend = [0]

    def pg_cpu() -> float:
        return cpu_s(backend).get(backend[0], 0.0)

    def timed(name: str, fn: Any) -> Any:
        def run(*a: Any, **k: Any) -> Any:
            c = pg_cpu()
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name].append((time.perf_counter() - t) * 1000)
                backend_cpu[name] += pg_cpu() - c

        return run

    sizes = []
    patched = [
        (locate, "facts", "facts: jointgrid_facts() round trip, parsed"),
        (cases, "decide", "decide (pure Python)"),
        (incidents, "insert_reported", "insert: case + event + commit, one round trip"),
        (cases, "case_view", "case_view of the stored row"),
    ]
    saved = [(m, a, getattr(m, a)) for m, a, _ in patched]
    for m, a, name in patched:
        setattr(m, a, timed(name, getattr(m, a)))
    try:
        with connect(url) as conn:
            conn.autocommit = True
            backend[0] = conn.info.backend_pid
            actor = {"key_id": "bench-steps", "role": "grid_worker", "side": None}
            for k, b in enumerate(bodies):
                body = ReportIn.model_validate(b)
                t = time.perf_counter()
                case, _ = cases.report(
                    conn, body, cat, idempotency_key=str(uuid.uuid4()), actor=actor
                )
                t1 = time.perf_counter()
                out = orjson.dumps(case)
                t2 = time.perf_counter()
                if k < 50:  # warm-up: plans cached, imports done
                    spent.clear()
                    backend_cpu.clear()
                    continue
                spent["whole report (use-case)"].append((t1 - t) * 1000)
                spent["orjson.dumps of the answer"].append((t2 - t1) * 1000)
                sizes.append(len(out))
    finally:
        for m, a, fn in saved:
            setattr(m, a, fn)
    from bench._common import percentile

    rows = [
        {
            "step": name,
            "mean_ms": round(sum(v) / len(v), 3),
            "p50_ms": round(percentile(v, 50), 3),
            "p99_ms": round(percentile(v, 99), 3),
            "pg_cpu_ms": round(1000 * backend_cpu[name] / len(v), 3) if name in backend_cpu else "",
        }
        for name, v in spent.items()
    ]
    print(table(rows, ["step", "mean_ms", "p50_ms", "p99_ms", "pg_cpu_ms"]))
    sizes.sort()
    print(
        f"answer bytes: mean {sum(sizes) / len(sizes):.0f}, p50 {sizes[len(sizes) // 2]},"
        f" max {sizes[-1]} ({len(sizes)} reports)"
    )


def pairs(settings: str, rounds: int) -> None:
    """Paired rounds of the full path: without, then with ``settings``, ``rounds`` times."""
    url = province_url()
    n = int(SECONDS * 3000) + 2000
    out = []
    for k in range(rounds):
        for label, u in (("without", url), (settings, with_options(url, settings))):
            reqs = requests_for(url, n, seed=100 + 2 * k + (label != "without"))
            r = run_full(u, reqs, SECONDS, "ingest-pairs-server.log")
            out.append({"round": k + 1, "settings": label, **r})
            print(json.dumps(out[-1]), flush=True)
    cols = ["round", "settings", "requests", "errors", "per_s", "p50_ms", "p99_ms", "max_ms",
            "server_cpu_ms", "pg_cpu_ms"]  # fmt: skip
    print(table(out, cols))
    Path(ROOT / "var" / "bench" / "ingest-pairs.json").write_text(json.dumps(out))


def main() -> None:
    url = province_url()
    extra = os.environ.get("JOINTGRID_BENCH_PG_SETTINGS", "")
    served = with_options(url, extra) if extra else url
    n = int(SECONDS * 3000) + 2000
    reqs = requests_for(url, n)
    logdir = ROOT / "var" / "bench"
    full = run_full(served, reqs, SECONDS, "ingest-server.log")

    port = free_port()
    app = f"bench-ceiling-{port}"
    env = {"DATABASE_URL": named(served, app), "JOINTGRID_ESCALATION_INTERVAL_S": "0"}
    with serve(
        [sys.executable, "-m", "uvicorn", "bench._ceiling_app:create_app", "--factory",
         "--port", str(port), "--workers", str(WORKERS), "--log-level", "info"],
        env,
        port,
        logdir / "ceiling-server.log",
    ) as proc:  # fmt: skip
        ceiling = measure(port, proc.pid, reqs, SECONDS, url, app)

    ratio = float(full["per_s"]) / float(ceiling["per_s"])  # type: ignore[arg-type]
    p99_ratio = float(full["p99_ms"]) / float(ceiling["p99_ms"])  # type: ignore[arg-type]
    rows = [
        {"endpoint": "POST /api/v1/incidents (full decision + audit event)", **full},
        {"endpoint": "ceiling: same stack, INSERT one row", **ceiling},
    ]
    cols = ["endpoint", "requests", "errors", "per_s", "p50_ms", "p99_ms", "max_ms", "rss_max_mb"]
    mem_cols = ["endpoint", "server_cpu_ms", "pg_cpu_ms", "rss_supervisor_mb", "rss_worker_mb",
                "pss_worker_mb"]  # fmt: skip
    ok_t = ratio >= 0.5
    ok_p = p99_ratio <= 2.0
    ok_m = max(float(full["rss_worker_mb"]), float(full["pss_worker_mb"])) <= 300  # type: ignore[arg-type]
    settings = f" PostgreSQL settings of the servers' sessions: `{extra}`." if extra else ""
    body = f"""
{WORKERS} uvicorn worker(s), {CONCURRENCY} keep-alive connections from the load generator (its
own process), {SECONDS:.0f} s after a 3 s warm-up, reports spread over the province; the
server, PostgreSQL and the load generator share the machine's 2 cores.{settings}

{table(rows, cols)}

**Throughput: {ratio:.0%} of the ceiling** measured in the same run (target ≥ 50 %:
{"met" if ok_t else "missed"}); **p99 {full["p99_ms"]} ms, {p99_ratio:.1f}× the ceiling's
p99** of {ceiling["p99_ms"]} ms (target ≤ 2×: {"met" if ok_p else "missed"}).

**CPU per request and memory** (CPU: the server's processes and the PostgreSQL backends of
its sessions, from `/proc`, over the measured seconds, divided by the requests; memory: the
peak of samples every 0.5 s under the load, per worker the larger worker's):

{table(rows, mem_cols)}

Per worker: RSS {full["rss_worker_mb"]} MB, PSS {full["pss_worker_mb"]} MB (target ≤ 300 MB:
{"met" if ok_m else "missed"}).
"""
    write_section("ingest", "Report ingestion and memory", body)
    print(body)
    Path(logdir / "ingest.json").write_text(json.dumps({"full": full, "ceiling": ceiling}))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "steps":
        steps(int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
    elif len(sys.argv) > 1 and sys.argv[1] == "pairs":
        pairs(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    else:
        main()
