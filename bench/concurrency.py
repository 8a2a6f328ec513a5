"""Concurrent GETs against a running server: statuses, codes and latency per path.

    .venv/bin/python bench/concurrency.py http://127.0.0.1:8103 KEY 80 /ogc/collections/incidents/items ...

Each path gets ``n`` requests at once (one asyncio + httpx client per path); prints one line
per path. Used for the figures in docs/reliability.md ("False 503 under concurrency").
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections import Counter

import httpx


async def burst(base: str, key: str, n: int, path: str) -> str:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    headers = {"Authorization": f"Bearer {key}"} if key != "-" else {}
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits, headers=headers) as c:

        async def one() -> tuple[int, str, float]:
            t0 = time.monotonic()
            r = await c.get(path)
            code = ""
            if r.status_code >= 400:
                try:
                    body = r.json()
                except ValueError:
                    body = {}
                if isinstance(body, list):  # Open311's error shape: a list of errors
                    body = body[0] if body else {}
                code = str(body.get("code", "")) + (
                    ":" + body["description"][:40] if "description" in body else ""
                )
            return r.status_code, code, time.monotonic() - t0

        t0 = time.monotonic()
        out = await asyncio.gather(*[one() for _ in range(n)])
        wall = time.monotonic() - t0
    statuses = Counter(f"{s}{'/' + c if c else ''}" for s, c, _ in out)
    lat = sorted(t for *_, t in out)
    p50 = statistics.median(lat)
    p95 = lat[int(0.95 * (len(lat) - 1))]
    return (
        f"{path}: {n} at once -> {dict(statuses)}; p50 {p50:.2f} s, p95 {p95:.2f} s, "
        f"max {lat[-1]:.2f} s, wall {wall:.2f} s"
    )


async def main() -> None:
    base, key, n, *paths = sys.argv[1:]
    for path in paths:
        print(await burst(base, key, int(n), path), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
