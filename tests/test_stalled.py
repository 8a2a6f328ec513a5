"""Stalled clients against a real `jointgrid serve` (api.server, default limits): cut off by
minimum data rates, never by a total time; connections per address capped.

Clients use their own loopback addresses (127.0.0.2 and up, all of 127/8 is loopback), so the
per-address cap is tested apart from the timeouts.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.server import ConnectionSettings
from tests.conftest import free_port, wait_healthy

pytestmark = pytest.mark.postgis

DEFAULTS = ConnectionSettings()
HEAD_S = DEFAULTS.head_timeout_s
WINDOW_S = DEFAULTS.body_window_s
SLACK_S = 2.5  # the once-a-second check, and a busy machine


@pytest.fixture(scope="module")
def server(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    port = free_port()
    log = tmp_path_factory.mktemp("stalled") / "server.log"
    env = {**os.environ, "DATABASE_URL": db_url, "JOINTGRID_ESCALATION_INTERVAL_S": "0"}
    for name in list(env):
        if name.startswith("JOINTGRID_HTTP_"):
            del env[name]  # the defaults are what is tested
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield "127.0.0.1", port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        text = Path(log).read_text()
        # graceful: uvicorn finishes, then re-raises the signal (as under `make run`)
        assert code in (0, -signal.SIGTERM), (code, text[-2000:])
        assert "Application shutdown complete" in text, text[-2000:]
        assert "Traceback" not in text, text[-3000:]


async def _open(
    server: tuple[str, int], local: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*server, local_addr=(local, 0))


async def _until_closed(
    reader: asyncio.StreamReader, t0: float, limit: float
) -> tuple[float, bytes]:
    """Read until the server closes; (seconds since t0, what it sent)."""
    data = b""
    try:
        async with asyncio.timeout(limit):
            while chunk := await reader.read(65536):
                data += chunk
    except ConnectionResetError:
        pass
    return time.monotonic() - t0, data


async def _get(server: tuple[str, int], local: str, path: str = "/healthz") -> bytes:
    reader, writer = await _open(server, local)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    _, data = await _until_closed(reader, time.monotonic(), 20)
    writer.close()
    return data


def test_400_clients_stalled_in_their_body_are_cut_within_the_window(server):
    """The issue's probe: 400 clients declare 1,000 body bytes and send 10. Each is answered
    408 and closed one rate window after its head, none before; the server keeps answering
    others meanwhile."""

    async def stalled(local: str) -> tuple[float, bytes]:
        reader, writer = await _open(server, local)
        t0 = time.monotonic()
        writer.write(
            # /route reads its JSON body before anything else (a report checks the key first)
            b"POST /api/v1/route HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n0123456789"
        )
        await writer.drain()
        out = await _until_closed(reader, t0, WINDOW_S + 20)
        writer.close()
        return out

    async def scenario() -> tuple[list[tuple[float, bytes]], list[bytes]]:
        clients = [stalled(f"127.0.0.{2 + i % 10}") for i in range(400)]
        task = asyncio.gather(*clients)
        await asyncio.sleep(WINDOW_S / 2)
        meanwhile = [await _get(server, "127.0.0.30") for _ in range(3)]
        return await task, meanwhile

    results, meanwhile = asyncio.run(scenario())
    assert all(m.startswith(b"HTTP/1.1 200") for m in meanwhile), meanwhile
    times = sorted(t for t, _ in results)
    assert times[0] >= WINDOW_S - 0.5, times[:5]  # a rate over a window, not an instant cut
    assert times[-1] <= WINDOW_S + SLACK_S + 3, times[-5:]  # 400 at once: a little more slack
    assert all(d.startswith(b"HTTP/1.1 408") and b"request_timeout" in d for _, d in results)


def test_silent_and_trickling_heads_are_cut_at_the_head_timeout(server):
    """A connection that sends nothing, and one that sends its head a byte a second (each
    byte well inside any gap rule), are both answered 408 and closed at the head timeout."""

    async def silent() -> tuple[float, bytes]:
        reader, writer = await _open(server, "127.0.0.40")
        out = await _until_closed(reader, time.monotonic(), HEAD_S + 20)
        writer.close()
        return out

    async def trickle() -> tuple[float, bytes]:
        reader, writer = await _open(server, "127.0.0.41")
        t0 = time.monotonic()
        head = b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Padding: " + b"a" * 40 + b"\r\n\r\n"

        async def send() -> None:
            for i in range(len(head)):
                if writer.is_closing():
                    return
                writer.write(head[i : i + 1])
                try:
                    await writer.drain()
                except ConnectionError:
                    return
                await asyncio.sleep(1.0)

        sender = asyncio.ensure_future(send())
        out = await _until_closed(reader, t0, HEAD_S + 20)
        sender.cancel()
        writer.close()
        return out

    async def scenario() -> list[tuple[float, bytes]]:
        return await asyncio.gather(*[silent() for _ in range(10)], *[trickle() for _ in range(10)])

    for took, data in asyncio.run(scenario()):
        assert HEAD_S - 0.5 <= took <= HEAD_S + SLACK_S, took
        assert data.startswith(b"HTTP/1.1 408"), data


def test_a_slow_steady_body_passes_and_one_that_stops_is_cut(server):
    """600 KB at 50 KB/s (12 s, longer than the rate window) is read to its end and answered
    by the application; the same upload stopping after 2 s is cut one window later."""
    rate, size = 50_000, 600_000
    body = b'{"lon": 105.64, "lat": 30.28, "category": "x", "description": "' + b"a" * (size - 80)
    body += b'"}'.rjust(size - len(body), b" ")[-(size - len(body)) :]
    assert len(body) == size

    async def upload(stop_after_s: float | None) -> tuple[float, bytes]:
        reader, writer = await _open(server, "127.0.0.50")
        t0 = time.monotonic()
        writer.write(
            # /route reads its JSON body before anything else (a report checks the key first)
            b"POST /api/v1/route HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
        )
        sent, step = 0, rate // 10
        while sent < size:
            if stop_after_s is not None and time.monotonic() - t0 >= stop_after_s:
                break
            writer.write(body[sent : sent + step])
            await writer.drain()
            sent += step
            await asyncio.sleep(max(0.0, t0 + sent / rate - time.monotonic()))
        out = await _until_closed(reader, t0, WINDOW_S + 30)
        writer.close()
        return out

    async def scenario() -> list[tuple[float, bytes]]:
        return await asyncio.gather(upload(None), upload(2.0))

    (steady_s, steady), (stopped_s, stopped) = asyncio.run(scenario())
    assert steady_s >= size / rate - 0.5
    # All 600 KB arrived: the application answered (no key: 401), not the rate rule (408).
    assert steady.startswith(b"HTTP/1.1 401"), steady[:300]
    assert stopped.startswith(b"HTTP/1.1 408"), stopped[:300]
    assert 2.0 + WINDOW_S - 1.5 <= stopped_s <= 2.0 + WINDOW_S + SLACK_S, stopped_s


def test_connections_per_address_are_capped_and_other_addresses_served(server):
    """One address may hold the cap's number of connections (idle ones too); one more is
    answered 429 and closed, while another address is served, and a freed place is usable."""
    cap = DEFAULTS.max_per_address

    async def scenario() -> tuple[bytes, bytes, bytes, float]:
        t0 = time.monotonic()
        held = [await _open(server, "127.0.0.60") for _ in range(cap)]
        await asyncio.sleep(0.2)
        refused = await _get(server, "127.0.0.60")
        other = await _get(server, "127.0.0.61")
        _, writer = held.pop()
        writer.close()
        await asyncio.sleep(0.3)
        again = await _get(server, "127.0.0.60")
        took = time.monotonic() - t0
        for _, w in held:
            w.close()
        return refused, other, again, took

    refused, other, again, took = asyncio.run(scenario())
    assert took < HEAD_S - 1, "the held connections must still be open (not cut by the head rule)"
    assert refused.startswith(b"HTTP/1.1 429") and b"too_many_connections" in refused, refused
    assert b"retry-after: 5" in refused.lower()
    assert other.startswith(b"HTTP/1.1 200"), other
    assert again.startswith(b"HTTP/1.1 200"), again
