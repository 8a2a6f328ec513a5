"""Which HTTP server cuts stalled clients, and what it costs: the figures behind
docs/reliability.md, "Stalled connections".

    .venv/bin/python -m bench.stalled [--candidates /path/to/venv/bin]

Serves ``bench/_toy_asgi.py`` with each server in turn on 127.0.0.1 and probes it: a body
that stops (1,000 bytes declared, 10 sent), a body and a head each trickled a byte every 2 s,
a silent connection, a steady 600 KB body at 50 KB/s (12 s), a 12 s streaming answer read by
a client that sends nothing more; and the server's CPU time per hello-world request (20,000
over 32 keep-alive connections: CPU per request, since a rate on two shared cores says more
about the neighbours than about the server). Each probe gives up after 35 s ("held"). hypercorn and granian are not dependencies of the project: give
the bin folder of a virtualenv that has them (``pip install hypercorn granian``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._common import free_port, http_request, load

ROOT = Path(__file__).resolve().parents[1]
GIVE_UP_S = 35.0


def servers(candidates: str | None) -> dict[str, list[str]]:
    py = sys.executable
    out = {
        "uvicorn (httptools, as before)": [
            py,
            "-m",
            "uvicorn",
            "bench._toy_asgi:app",
            "--http",
            "httptools",
            "--port",
            "{port}",
            "--log-level",
            "warning",
        ],
        "uvicorn + api.server (jointgrid serve)": [
            py,
            "-c",
            "import sys, uvicorn; from api.server import GuardedHttpToolsProtocol as P;"
            " uvicorn.run('bench._toy_asgi:app', port=int(sys.argv[1]), http=P,"
            " log_level='warning')",
            "{port}",
        ],
    }
    if candidates:
        out["hypercorn 0.18, --read-timeout 5"] = [
            f"{candidates}/hypercorn",
            "bench._toy_asgi:app",
            "--bind",
            "127.0.0.1:{port}",
            "--read-timeout",
            "5",
            "--log-level",
            "warning",
        ]
        out["granian 2.8, --http1-header-read-timeout 5000"] = [
            f"{candidates}/granian",
            "--interface",
            "asgi",
            "--port",
            "{port}",
            "--http1-header-read-timeout",
            "5000",
            "--log-level",
            "warning",
            "bench._toy_asgi:app",
        ]
    return out


async def _closed(reader: asyncio.StreamReader, t0: float) -> tuple[float | None, bytes]:
    data = b""
    try:
        async with asyncio.timeout(GIVE_UP_S):
            while chunk := await reader.read(65536):
                data += chunk
    except TimeoutError:
        return None, data
    except ConnectionError:
        pass
    return round(time.monotonic() - t0, 1), data


async def probes(port: int) -> dict[str, Any]:
    async def conn() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", port)

    async def stopped_body() -> Any:
        r, w = await conn()
        t0 = time.monotonic()
        w.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789")
        took, data = await _closed(r, t0)
        w.close()
        return {"closed_after_s": took, "status": data[9:12].decode() or None}

    async def trickled_head() -> Any:
        r, w = await conn()
        t0 = time.monotonic()
        head = b"GET / HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"a" * 40 + b"\r\n\r\n"

        async def send() -> None:
            for i in range(len(head)):
                w.write(head[i : i + 1])
                await asyncio.sleep(2.0)

        task = asyncio.ensure_future(send())
        took, data = await _closed(r, t0)
        task.cancel()
        w.close()
        return {"closed_after_s": took, "status": data[9:12].decode() or None}

    async def trickled_body() -> Any:
        r, w = await conn()
        t0 = time.monotonic()
        w.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")

        async def send() -> None:
            for _ in range(1000):
                w.write(b"a")
                await asyncio.sleep(2.0)

        task = asyncio.ensure_future(send())
        took, data = await _closed(r, t0)
        task.cancel()
        w.close()
        return {"closed_after_s": took, "status": data[9:12].decode() or None}

    async def silent() -> Any:
        r, w = await conn()
        took, _ = await _closed(r, time.monotonic())
        w.close()
        return {"closed_after_s": took}

    async def steady_body() -> Any:
        r, w = await conn()
        size, rate = 600_000, 50_000
        t0 = time.monotonic()
        w.write(f"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: {size}\r\n\r\n".encode())
        sent = 0
        try:
            while sent < size:
                w.write(b"a" * 5000)
                await w.drain()
                sent += 5000
                await asyncio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
        except ConnectionError:
            pass
        try:
            async with asyncio.timeout(GIVE_UP_S):
                data = await r.readuntil(b"ok " + str(size).encode())
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            data = b""
        w.close()
        return {"answered": bool(data), "after_s": round(time.monotonic() - t0, 1)}

    async def long_stream() -> Any:
        r, w = await conn()
        t0 = time.monotonic()
        w.write(b"GET /stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        _, data = await _closed(r, t0)
        w.close()
        return {"complete": b"end" in data, "after_s": round(time.monotonic() - t0, 1)}

    names = ["stopped_body", "trickled_body", "trickled_head", "silent", "steady_body"]
    names.append("long_stream")
    got = await asyncio.gather(
        stopped_body(), trickled_body(), trickled_head(), silent(), steady_body(), long_stream()
    )
    return dict(zip(names, got, strict=True))


def cpu_s(root: int) -> float:
    """CPU seconds (user + system) used so far by process ``root`` and its descendants."""
    stats: dict[int, tuple[int, int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(d.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, grew = {root}, True
    while grew:
        more = {p for p, (pp, _) in stats.items() if pp in tree} - tree
        grew, tree = bool(more), tree | more
    return sum(stats[p][1] for p in tree if p in stats) / os.sysconf("SC_CLK_TCK")


HELLO_N = 20_000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", help="bin folder of a virtualenv with hypercorn, granian")
    args = ap.parse_args()
    results = {}
    for name, cmd in servers(args.candidates).items():
        port = free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [c.replace("{port}", str(port)) for c in cmd],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(100):
                try:
                    with __import__("socket").create_connection(("127.0.0.1", port), 0.2):
                        break
                except OSError:
                    time.sleep(0.1)
            load(port, [http_request("GET", "/", None, {})] * 2_000, concurrency=8, seconds=5)
            c0 = cpu_s(proc.pid)
            rate = load(
                port, [http_request("GET", "/", None, {})] * HELLO_N, concurrency=32, seconds=60
            )
            used = cpu_s(proc.pid) - c0
            res = asyncio.run(probes(port))
            res["hello_world"] = {k: rate[k] for k in ("requests", "per_s", "p50_ms", "errors")}
            res["hello_world"]["server_cpu_us_per_request"] = round(
                used / max(1, rate["requests"]) * 1e6, 1
            )
        finally:
            proc.terminate()
            proc.wait(timeout=20)
        results[name] = res
        print(json.dumps({name: res}), flush=True)


if __name__ == "__main__":
    main()
