"""Shared helpers of the benchmarks: throwaway databases, a server under test, a lean
load generator, percentiles, and writing results into docs/performance.md.

Every benchmark runs on its own database on the private cluster (never a test database) and
reports each number beside an anchor measured in the same run, because the machine is shared
and noisy: the ratio is what is comparable from run to run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PERF = Path(os.environ.get("JOINTGRID_BENCH_PERF_FILE") or ROOT / "docs" / "performance.md")
PROVINCE_DB = "jointgrid_bench_province"


def server_url() -> str:
    url = os.environ.get("JOINTGRID_BENCH_SERVER_URL")
    if url:
        return url
    return (ROOT / "var" / "pg" / "url").read_text().strip()


def with_db(url: str, dbname: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo(**params)  # type: ignore[arg-type]


def province_url() -> str:
    """The province database made by bench/province.py (scripts/bench.sh runs it first)."""
    return os.environ.get("JOINTGRID_BENCH_PROVINCE_URL") or with_db(server_url(), PROVINCE_DB)


def create_db(name: str, *, seed: bool = True) -> str:
    """A fresh database ``name`` (dropped first if left over), migrated and seeded."""
    import psycopg

    from api.usecases.loading import migrate_and_seed
    from layers.db import connect

    assert name.startswith("jointgrid_bench_"), "benchmarks only touch their own databases"
    with psycopg.connect(with_db(server_url(), "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = with_db(server_url(), name)
    with connect(url) as conn:
        migrate_and_seed(conn, load=seed)
    return url


def drop_db(name: str) -> None:
    import psycopg

    assert name.startswith("jointgrid_bench_")
    with psycopg.connect(with_db(server_url(), "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def settle(url: str, *, timeout_s: float = 120.0) -> float:
    """Let the database finish what an earlier benchmark left behind (autovacuum of the rows it
    wrote, dirty pages) before a latency is measured: wait until no autovacuum worker runs,
    then CHECKPOINT. Returns the seconds waited."""
    from layers.db import connect

    t = time.perf_counter()
    with connect(url) as conn:
        conn.autocommit = True
        while time.perf_counter() - t < timeout_s:
            row = conn.execute(
                "SELECT count(*) AS n FROM pg_stat_activity"
                " WHERE backend_type = 'autovacuum worker'"
            ).fetchone()
            if not row or not row["n"]:
                break
            time.sleep(1.0)
        conn.execute("CHECKPOINT")
    return time.perf_counter() - t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(
    args: Sequence[str], env: dict[str, str], port: int, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends; wait for its port to answer first."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            list(args), env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.2)
        time.sleep(0.5)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MB."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(k) for k in kids]
    for p in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024.0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))
    return s[k]


# -- the load generator: HTTP/1.1 keep-alive over raw asyncio streams ------------------------
# httpx costs ~0.3 ms of CPU per request, which on two shared cores would be measured as the
# server's time; this client costs a few microseconds.


async def _worker(
    port: int,
    requests: list[bytes],
    out: list[tuple[float, int]],
    stop_at: float,
    start: int,
    step: int,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    try:
        while time.perf_counter() < stop_at and i < len(requests):
            t0 = time.perf_counter()
            writer.write(requests[i])
            await writer.drain()
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            out.append((time.perf_counter() - t0, int(status_line.split()[1])))
            i += step
    finally:
        writer.close()


def http_request(method: str, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


def load(port: int, requests: list[bytes], *, concurrency: int, seconds: float) -> dict[str, Any]:
    """Send ``requests`` over ``concurrency`` keep-alive connections for up to ``seconds``."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out: list[tuple[float, int]] = []

    async def main() -> float:
        t0 = time.perf_counter()
        stop = t0 + seconds
        await asyncio.gather(
            *(_worker(port, requests, out, stop, k, concurrency) for k in range(concurrency))
        )
        return time.perf_counter() - t0

    elapsed = asyncio.run(main())
    lat = [x[0] * 1000 for x in out]
    ok = sum(1 for x in out if x[1] < 300)
    return {
        "requests": len(out),
        "ok": ok,
        "errors": len(out) - ok,
        "statuses": sorted({x[1] for x in out}),
        "seconds": round(elapsed, 2),
        "per_s": round(len(out) / elapsed, 1),
        "p50_ms": round(percentile(lat, 50), 2),
        "p90_ms": round(percentile(lat, 90), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "max_ms": round(max(lat) if lat else float("nan"), 2),
    }


def run_load_in_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``load`` in its own process (its own core share, its own GIL)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bench._loadgen"],
        input=json.dumps(spec).encode(),
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(proc.stdout)  # type: ignore[no-any-return]


# -- results into docs/performance.md ----------------------------------------------------------


def write_section(key: str, title: str, body: str) -> None:
    """Replace (or append) this benchmark's own section of docs/performance.md, between its
    markers; the rest of the file, including other people's sections, is left as it is."""
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"{start}\n### {title}\n\n_Last run: {stamp} (`python -m bench.{key}`, part of `make bench`)._"
        f"\n\n{body.strip()}\n{end}"
    )
    text = PERF.read_text(encoding="utf-8") if PERF.exists() else "# Performance\n"
    if start in text and end in text:
        text = re.sub(
            re.escape(start) + r".*?" + re.escape(end), lambda _m: block, text, flags=re.S
        )
    else:
        anchor = "<!-- bench:results -->"
        if anchor in text:
            text = text.replace(anchor, anchor + "\n\n" + block, 1)
        else:
            text = text.rstrip() + "\n\n" + block + "\n"
    PERF.write_text(text, encoding="utf-8")


def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(str(r.get(c, "")) for c in cols) + " |")
    return "\n".join(out)
