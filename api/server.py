"""The HTTP layer under ``jointgrid serve``: uvicorn's httptools protocol with the limits that
uvicorn does not have (uvicorn issue #157: no timeout for a request's head or body).

Without them one client that declares 1,000 body bytes and sends 10 holds its connection for
ever, and a few hundred such clients hold the server. The rules are minimum data rates, not
total times, so a 2 MB photo over a 50 KB/s phone link (40 s) passes:

- **head**: the request line and headers must be complete within ``head_timeout_s`` of the
  connection opening (or of the request's first byte on a kept-alive connection); else 408;
- **body**: while the server waits for body bytes, every ``body_window_s`` window must bring
  ``body_min_rate`` bytes a second on average, or the rest of the body if that is less; else
  408. Time during which the server itself is not reading (the application has not taken the
  bytes already buffered, or a ``100-continue`` not yet sent) does not count against the
  client;
- **answer**: a client that takes nothing of the answer for ``send_timeout_s`` (the socket's
  buffer stays full) is dropped, so it cannot hold a streaming feed's database connection;
- **connections per address**: at most ``max_per_address`` connections at once from one
  client address (an IPv6 client counts by its /64), idle or busy; one more is answered 429
  ``too_many_connections`` and closed.

Hand-written because no kept option does this under uvicorn, and the servers that have one
fall short (measured in docs/reliability.md, "Stalled connections"): hypercorn's
``read_timeout`` is a gap between reads (a head trickled a byte every few seconds stays for
ever) and it also cuts a streaming answer whose client sends nothing while it reads; nginx in
front would do all of it (``client_header_timeout``, ``client_body_timeout``,
``send_timeout``, ``limit_conn``) at the cost of a second server to run and supervise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from collections import Counter, deque
from functools import cache
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("jointgrid")


class ConnectionSettings(BaseSettings):
    """How slow a client may be, and how many connections one address may hold."""

    model_config = SettingsConfigDict(env_prefix="JOINTGRID_HTTP_", extra="ignore")

    head_timeout_s: float = Field(default=10.0, gt=0)
    body_min_rate: int = Field(default=1024, ge=1, description="bytes per second")
    body_window_s: float = Field(default=10.0, gt=0)
    send_timeout_s: float = Field(default=60.0, gt=0)
    # 0: no cap (behind a reverse proxy every client has the proxy's address)
    max_per_address: int = Field(default=128, ge=0)


@cache
def limits() -> ConnectionSettings:
    return ConnectionSettings()


def address_key(client: tuple[str, int] | None) -> str | None:
    """The address a connection counts against: the IPv4 address, or an IPv6 /64."""
    if not client:
        return None
    try:
        ip = ipaddress.ip_address(client[0])
    except ValueError:
        return client[0]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# Open connections per client address, in this server process.
OPEN: Counter[str] = Counter()


def _answer(status: bytes, code: str, message: str, extra: bytes = b"") -> bytes:
    body = json.dumps({"code": code, "message": message, "detail": None}).encode()
    return (
        b"HTTP/1.1 " + status + b"\r\n"
        b"content-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n" + extra + b"\r\n" + body
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the rules of this module."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits()
        self._address: str | None = None
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_deadline: float | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._samples: deque[tuple[float, int]] = deque()
        self._received = 0
        self._expected: int | None = None

    # -- the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = address_key(self.client)
        if self._address is not None:
            OPEN[self._address] += 1
            cap = self.limits.max_per_address
            if cap and OPEN[self._address] > cap:
                self._refused = True
                log.warning(
                    "refused a connection from %s: it already has %d open",
                    self._address,
                    cap,
                )
                # Answered when its request arrives (an answer before it could be lost to the
                # reset that closing with unread data causes); closed anyway after 2 s.
                self._head_timer = self.loop.call_later(2.0, self.transport.close)
                return
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._send_timer = None
        if self._address is not None:
            OPEN[self._address] -= 1
            if OPEN[self._address] <= 0:
                del OPEN[self._address]
            self._address = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            if not self.transport.is_closing():
                self.transport.write(
                    _answer(
                        b"429 Too Many Requests",
                        "too_many_connections",
                        f"this address already has {self.limits.max_per_address} connections "
                        "open; reuse one (keep-alive) or close some, then retry",
                        b"retry-after: 5\r\n",
                    )
                )
                self.transport.close()
            return
        super().data_received(data)

    # -- the head

    # The head's timer is lazy: a request only sets its deadline, and the one timer of the
    # connection, when it fires, cuts, waits on for a later deadline, or ends. Requests in
    # quick succession on a kept-alive connection so cost no timer each.

    def _arm_head(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.time() + self.limits.head_timeout_s
        if self._head_timer is None:
            self._head_timer = self.loop.call_at(self._head_deadline, self._head_late)

    def _head_late(self) -> None:
        self._head_timer = None
        deadline = self._head_deadline
        if deadline is None or self.transport.is_closing():
            return  # the head came in time
        if deadline > self.loop.time():
            self._head_timer = self.loop.call_at(deadline, self._head_late)
            return
        log.info("closed a connection from %s: no complete request head in time", self._address)
        if self.cycle is None or self.cycle.response_complete:
            self.transport.write(
                _answer(
                    b"408 Request Timeout",
                    "request_timeout",
                    f"the request line and headers must arrive within "
                    f"{self.limits.head_timeout_s:g} s",
                )
            )
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_head()  # a kept-alive connection's next request

    def on_headers_complete(self) -> None:
        self._head_deadline = None
        super().on_headers_complete()
        self._expected = None
        chunked = False
        for name, value in self.headers:
            if name == b"content-length" and value.strip().isdigit():
                self._expected = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked or (self._expected or 0) > 0:
            self._received = 0
            self._samples.clear()
            self._samples.append((self.loop.time(), 0))
            self._body_timer = self.loop.call_later(1.0, self._body_check)

    # -- the body

    def on_body(self, body: bytes) -> None:
        self._received += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._stop_body()
        super().on_message_complete()

    def _stop_body(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._samples.clear()

    def _body_check(self) -> None:
        """Once a second while a body is read: enough bytes in the last window?"""
        self._body_timer = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        cycle = self.cycle
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            # The server is not reading, or the client was told to wait: not its fault.
            self._samples.clear()
        self._samples.append((now, self._received))
        window = self.limits.body_window_s
        while len(self._samples) > 1 and self._samples[1][0] <= now - window:
            self._samples.popleft()
        t0, seen0 = self._samples[0]
        if now - t0 >= window - 0.05:
            need = self.limits.body_min_rate * (now - t0)
            if self._expected is not None:
                need = min(need, self._expected - seen0)
            if self._received - seen0 < need:
                self._body_late(now - t0, self._received - seen0)
                return
        self._body_timer = self.loop.call_later(1.0, self._body_check)

    def _body_late(self, span_s: float, got: int) -> None:
        log.info(
            "closed a connection from %s: %d body bytes in %.0f s (%d of %s so far)",
            self._address,
            got,
            span_s,
            self._received,
            self._expected if self._expected is not None else "chunked",
        )
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self.transport.write(
                _answer(
                    b"408 Request Timeout",
                    "request_timeout",
                    f"the request body arrived too slowly: at least "
                    f"{self.limits.body_min_rate} bytes a second over any "
                    f"{self.limits.body_window_s:g} s are needed",
                )
            )
        if cycle is not None:
            # The application's receive() now answers http.disconnect, and whatever it still
            # sends is dropped.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    # -- the answer

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self.limits.send_timeout_s, self._send_late)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_late(self) -> None:
        self._send_timer = None
        log.info("dropped a connection from %s: it read nothing of the answer", self._address)
        self.transport.abort()  # close() would wait for the buffer the client never reads
